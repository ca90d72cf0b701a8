#!/usr/bin/env node
// A grpc.health.v1.Health probe for container HEALTHCHECKs and compose:
//   node health-probe.js <host:port> [service]
// Exits 0 when the server reports SERVING, 1 otherwise (within 2 s).
import { checkHealth } from './health-client';

const [address, service = ''] = process.argv.slice(2);
if (!address) {
  process.stderr.write('usage: health-probe <host:port> [service]\n');
  process.exit(2);
}
checkHealth(address, service, 2_000).then(
  (status) => {
    process.stdout.write(`${status}\n`);
    process.exit(status === 'SERVING' ? 0 : 1);
  },
  (error: unknown) => {
    process.stdout.write(
      `unreachable: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  },
);
