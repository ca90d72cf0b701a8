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

/** The apps others call, so found through discovery (the gateway is reached on its one port). */
export const SERVICES = ['user', 'order'] as const;
export type ServiceName = (typeof SERVICES)[number];

const isService = (app: string): app is ServiceName => SERVICES.includes(app as ServiceName);

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
  private readonly listed: Record<ServiceName, string[]> = { user: [], order: [] };
  private closed = false;

  constructor() {
    this.files = {
      user: join(this.dir, 'user.addresses'),
      order: join(this.dir, 'order.addresses'),
    };
    // There from the start, empty: a client started before any replica is ready gets UNAVAILABLE
    // at once (an empty list) rather than an error about a missing file.
    for (const service of SERVICES) writeAddressFile(this.files[service], []);
  }

  /** The target a client of `service` dials (`file:///...`). */
  target(service: ServiceName): string {
    return pathToFileURL(this.files[service]).href;
  }

  /** The addresses listed for `service` now. */
  addresses(service: ServiceName): readonly string[] {
    return this.listed[service];
  }

  /** Lists an app's replica; false if it was already listed, or the app is not a service. */
  register(app: string, address: string): boolean {
    if (this.closed || !isService(app) || this.listed[app].includes(address)) return false;
    this.listed[app] = [...this.listed[app], address];
    writeAddressFile(this.files[app], this.listed[app]);
    return true;
  }

  /** Unlists an app's replica; false if it was not listed. */
  deregister(app: string, address: string): boolean {
    if (this.closed || !isService(app) || !this.listed[app].includes(address)) return false;
    this.listed[app] = this.listed[app].filter((listed) => listed !== address);
    writeAddressFile(this.files[app], this.listed[app]);
    return true;
  }

  /** Removes the directory and its files; (de)registering does nothing afterwards. */
  close(): void {
    this.closed = true;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
