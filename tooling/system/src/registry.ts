// The runner's side of local service discovery: one file per service, listing one `host:port` per
// ready replica, in a directory of its own per running system (tests run many systems at once).
// The services' clients dial `file://` targets (@repo/service-kit/discovery) and follow the file as
// it changes, so they balance over exactly the replicas listed: what Kubernetes does with a
// Service's endpoints, or Prometheus with file_sd. A replica is listed once it reports ready and
// unlisted before it is stopped; see PROPAGATION_DELAY_MS for the wait in between.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeAddressFile } from '@repo/service-kit/discovery';
import { loadManifest } from './manifest';

/**
 * The apps others may call, so found through discovery: the manifest's gRPC services (the gateway
 * is reached on its one port).
 */
export const SERVICES: readonly string[] = loadManifest()
  .filter((app) => app.kind === 'grpc')
  .map((app) => app.name);
export type ServiceName = string;

const isService = (app: string): app is ServiceName => SERVICES.includes(app);

/**
 * How long a replica keeps running after its address left the discovery file, before it is sent
 * SIGTERM. The clients' resolver sees the file change within milliseconds (inotify) and their
 * balancer stops picking the replica; a call picked just before still reaches it, and the replica
 * drains such calls itself after SIGTERM. 300 ms leaves room for a busy machine: what matters is
 * that no client picks the replica after it has stopped accepting calls.
 */
export const PROPAGATION_DELAY_MS = 300;

export class Registry {
  /** A fresh directory, removed by close(). */
  readonly dir = mkdtempSync(join(tmpdir(), 'system-discovery-'));
  readonly files: Readonly<Record<ServiceName, string>>;
  private readonly listed: Record<ServiceName, string[]> = Object.fromEntries(
    SERVICES.map((service) => [service, []]),
  );
  private closed = false;

  constructor() {
    this.files = Object.fromEntries(
      SERVICES.map((service) => [service, join(this.dir, `${service}.addresses`)]),
    );
    // There from the start, empty: a client started before any replica is ready gets UNAVAILABLE
    // at once (an empty list) rather than an error about a missing file.
    for (const service of SERVICES) writeAddressFile(this.files[service]!, []);
  }

  /** The target a client of `service` dials (`file:///...`). */
  target(service: ServiceName): string {
    const file = this.files[service];
    if (!file)
      throw new Error(`${service} is not a gRPC service of the manifest: nothing calls it`);
    return pathToFileURL(file).href;
  }

  /** The addresses listed for `service` now. */
  addresses(service: ServiceName): readonly string[] {
    return this.listed[service] ?? [];
  }

  /** Lists an app's replica; false if it was already listed, or the app is not a service. */
  register(app: string, address: string): boolean {
    const listed = this.listed[app];
    if (this.closed || !isService(app) || !listed || listed.includes(address)) return false;
    this.listed[app] = [...listed, address];
    writeAddressFile(this.files[app]!, this.listed[app]);
    return true;
  }

  /** Unlists an app's replica; false if it was not listed. */
  deregister(app: string, address: string): boolean {
    const listed = this.listed[app];
    if (this.closed || !isService(app) || !listed?.includes(address)) return false;
    this.listed[app] = listed.filter((other) => other !== address);
    writeAddressFile(this.files[app]!, this.listed[app]);
    return true;
  }

  /** Removes the directory and its files; (de)registering does nothing afterwards. */
  close(): void {
    this.closed = true;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
