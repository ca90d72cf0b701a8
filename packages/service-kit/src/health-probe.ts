#!/usr/bin/env node
// A health probe for container HEALTHCHECKs and compose:
//   node health-probe.js <host:port> [service]
//     grpc.health.v1.Health: exits 0 when the server reports SERVING, 1 otherwise (within 2 s).
//   node health-probe.js
//     the app in the current directory, as its package.json's `service` (the app's manifest)
//     describes it: a gRPC service by its health check as above, on its port; the gateway by
//     GET /healthz answering 2xx. The port is the one its port variable sets, else the manifest's.
//     The one HEALTHCHECK of the repository's Dockerfile, whichever app the image holds.
import { readFileSync } from 'node:fs';
import { checkHealth } from './health-client';

interface Manifest {
  kind?: string;
  port?: number;
  portVariable?: string;
  grpcService?: string;
}

const done = (healthy: boolean, line: string): never => {
  process.stdout.write(`${line}\n`);
  process.exit(healthy ? 0 : 1);
};
const unreachable = (error: unknown) =>
  done(false, `unreachable: ${error instanceof Error ? error.message : String(error)}`);

function probeGrpc(address: string, service: string): void {
  checkHealth(address, service, 2_000).then(
    (status) => done(status === 'SERVING', status),
    unreachable,
  );
}

let [address, service = ''] = process.argv.slice(2);
if (!address) {
  let manifest: Manifest | undefined;
  try {
    manifest = (JSON.parse(readFileSync('package.json', 'utf8')) as { service?: Manifest }).service;
  } catch {
    manifest = undefined;
  }
  if (!manifest?.port) {
    process.stderr.write(
      'usage: health-probe <host:port> [service], or with no argument in an app directory whose package.json has a "service"\n',
    );
    process.exit(2);
  }
  const port = (manifest.portVariable && process.env[manifest.portVariable]) || manifest.port;
  if (manifest.kind === 'gateway') {
    fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2_000) }).then(
      (response) => done(response.ok, String(response.status)),
      unreachable,
    );
  } else {
    address = `127.0.0.1:${port}`;
    service = manifest.grpcService ?? '';
  }
}
if (address) probeGrpc(address, service);
