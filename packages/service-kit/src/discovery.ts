import { readFileSync, renameSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, experimental, status } from '@grpc/grpc-js';

type GrpcUri = experimental.GrpcUri;
type Resolver = experimental.Resolver;
type ResolverListener = experimental.ResolverListener;
const { registerResolver, statusOrFromError, statusOrFromValue, uriToString } = experimental;

/**
 * Where a client finds the replicas of a service, as a gRPC target name
 * (https://github.com/grpc/grpc/blob/master/doc/naming.md). What this system uses:
 *
 * - `host:port`: one address (DNS, first answer); the default for a single local process.
 * - `ipv4:10.0.0.1:50051,10.0.0.2:50051`: a static list.
 * - `dns:///user:50051`: every address DNS gives (compose `deploy.replicas`, a Kubernetes headless
 *   Service). Re-resolved when a connection ends, which servers force every few tens of seconds
 *   (`grpc.max_connection_age_ms`, see grpc-server.ts), so new replicas get traffic.
 * - `file:///abs/path`: the addresses listed in a file, one `host:port` per line, followed as it
 *   changes (the resolver below). The local runner keeps one such file per service: a replica is
 *   listed once it is ready and unlisted before it is stopped, as Kubernetes does with endpoints.
 */
export const TARGET_PATTERN =
  /^(?:[A-Za-z0-9.-]+:\d{1,5}|ipv4:\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}(?:,\d{1,3}(?:\.\d{1,3}){3}:\d{1,5})*|dns:\/\/\/[A-Za-z0-9.-]+:\d{1,5}|file:\/\/\/\S+)$/;

const ADDRESS = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;

/** The `host:port` addresses of a discovery file: one per line; blank lines and `#` comments skipped. */
export function parseAddressFile(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
}

/** Writes a discovery file at once (a temporary file renamed over it): readers never see half of it. */
export function writeAddressFile(path: string, addresses: readonly string[]): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, addresses.map((address) => `${address}\n`).join(''));
  renameSync(temporary, path);
}

function readAddresses(path: string): { addresses: string[] } | { error: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return { error: `cannot read discovery file ${path}: ${(error as Error).message}` };
  }
  const addresses = parseAddressFile(text);
  const bad = addresses.find((address) => !ADDRESS.test(address));
  if (bad) return { error: `discovery file ${path} has ${JSON.stringify(bad)}, not host:port` };
  // grpc-js's round_robin handed an empty list queues calls until their deadline; an error makes
  // them fail at once.
  if (addresses.length === 0) return { error: `no replica is listed in ${path}` };
  return { addresses };
}

/**
 * grpc-js resolver for `file:///abs/path` targets. It reports the file's addresses and reports
 * again whenever the file changes (inotify on its directory, so a rename over the file is seen),
 * so the channel's balancer adds and drops replicas within milliseconds of the runner listing them.
 * An empty or unreadable file is reported as an error: calls then fail at once with UNAVAILABLE
 * (unless replicas listed before are still connected), never after waiting out their deadline.
 */
class FileResolver implements Resolver {
  private readonly path: string;
  private watcher: FSWatcher | undefined;
  private last: string | undefined;

  constructor(
    target: GrpcUri,
    private readonly listener: ResolverListener,
  ) {
    this.path = fileURLToPath(uriToString(target));
  }

  updateResolution(): void {
    if (!this.watcher) {
      try {
        this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
          if (name === null || name === basename(this.path)) this.report(false);
        });
        this.watcher.on('error', () => this.closeWatcher());
      } catch {
        // The directory is not there (yet): the read below says so; the channel asks again later.
      }
    }
    // Never synchronously with the call (the Resolver contract). The channel asks again whenever
    // its connections fail; the file has not changed then (the watcher reports changes), so only
    // a first request, or a file changed without the watcher seeing it, gets an answer: answering
    // every time would spin, since a failing channel asks again at once.
    process.nextTick(() => this.report(this.last === undefined));
  }

  destroy(): void {
    this.closeWatcher();
    this.last = undefined;
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private report(always: boolean): void {
    const result = readAddresses(this.path);
    const key = JSON.stringify(result);
    if (!always && key === this.last) return;
    this.last = key;
    if ('error' in result) {
      this.listener(
        statusOrFromError({
          code: status.UNAVAILABLE,
          details: result.error,
          metadata: new Metadata(),
        }),
        {},
        null,
        result.error,
      );
      return;
    }
    const endpoints = result.addresses.map((address) => {
      const [, host, port] = ADDRESS.exec(address)!;
      return { addresses: [{ host: host!.replace(/^\[|\]$/g, ''), port: Number(port) }] };
    });
    this.listener(statusOrFromValue(endpoints), {}, null, '');
  }

  static getDefaultAuthority(target: GrpcUri): string {
    return basename(target.path);
  }
}

let registered = false;

/** Lets every grpc-js channel in this process dial `file:///...` targets. Safe to call repeatedly. */
export function registerFileResolver(): void {
  if (registered) return;
  registerResolver('file', FileResolver);
  registered = true;
}
