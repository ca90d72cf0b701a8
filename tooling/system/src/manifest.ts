// The one list of the system's apps. Each app declares itself in its own package.json, under
// `service`: its kind, `pnpm dev`'s port and the variable it reads it from, the gRPC service its
// health check reports, its database, the apps it calls, its default replicas and production V8
// flags. The runner, the bench, the end-to-end and deployment checks read it here, so adding an app
// (`pnpm gen service`) edits none of them.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** A backend gRPC service (metrics on a METRICS_PORT of its own), or the public HTTP API. */
export type AppKind = 'grpc' | 'gateway';

export interface AppManifest {
  /** The app's directory under apps/, and its name everywhere else (`--replicas user=2`). */
  readonly name: string;
  /** Its workspace package, e.g. `@repo/user`. */
  readonly packageName: string;
  readonly kind: AppKind;
  /** `pnpm dev`'s port (tests pick free ones). */
  readonly port: number;
  /**
   * The variable the app reads its port from, e.g. `USER_GRPC_PORT`; the one it reads its listen
   * address from is the same ending in `_HOST`.
   */
  readonly portVariable: string;
  /** grpc kind: the fully qualified service its gRPC health check reports, e.g. `user.v1.UserService`. */
  readonly grpcService?: string;
  /** The name of its own PostgreSQL database, if it has one. */
  readonly database?: string;
  /** The apps it calls: they start before it, and it is given `<NAME>_SERVICE_ADDR` for each. */
  readonly calls: readonly string[];
  /** Default replicas in compose and Kubernetes. */
  readonly replicas: number;
  /** Production V8 flags (NODE_OPTIONS), as its image sets them. */
  readonly nodeOptions: string;
}

/** The repository root, from tooling/system/{src,dist}. */
export const ROOT = resolve(__dirname, '..', '..', '..');

/** An app's manifest, or the set of them, is wrong; the message names the app and the field. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
}

const FIELDS = [
  'kind',
  'port',
  'portVariable',
  'grpcService',
  'database',
  'calls',
  'replicas',
  'nodeOptions',
] as const;

/** The variable through which an app is given the address of `callee`: `USER_SERVICE_ADDR`. */
export function serviceAddressVariable(callee: string): string {
  return `${callee.toUpperCase().replace(/-/g, '_')}_SERVICE_ADDR`;
}

/** Checks one app's `service` object; `name` is its directory under apps/. */
export function parseAppManifest(name: string, packageName: string, raw: unknown): AppManifest {
  const fail = (field: string, problem: string): never => {
    throw new ManifestError(
      `apps/${name}/package.json: "service"${field ? `.${field}` : ''} ${problem}`,
    );
  };
  if (!/^[a-z][a-z0-9-]*$/.test(name)) {
    fail(
      '',
      `belongs to an app whose directory name ${JSON.stringify(name)} is not lower-case letters, digits and dashes`,
    );
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('', 'must be an object');
  const service = raw as Record<string, unknown>;
  for (const key of Object.keys(service)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      fail(key, `is not a known field (the fields are ${FIELDS.join(', ')})`);
    }
  }
  const { kind, port, portVariable, grpcService, database, calls, replicas, nodeOptions } = service;
  if (kind !== 'grpc' && kind !== 'gateway')
    fail('kind', `must be "grpc" or "gateway" (got ${JSON.stringify(kind)})`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    fail('port', `must be a port number from 1 to 65535 (got ${JSON.stringify(port)})`);
  }
  // Ending in _PORT: the app's listen address is read from the same name ending in _HOST.
  if (typeof portVariable !== 'string' || !/^[A-Z][A-Z0-9_]*_PORT$/.test(portVariable)) {
    fail(
      'portVariable',
      `must be an environment variable's name ending in _PORT, e.g. USER_GRPC_PORT (got ${JSON.stringify(portVariable)})`,
    );
  }
  if (kind === 'grpc') {
    if (
      typeof grpcService !== 'string' ||
      !/^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$/.test(grpcService)
    ) {
      fail(
        'grpcService',
        `must be the fully qualified gRPC service name, e.g. user.v1.UserService (got ${JSON.stringify(grpcService)})`,
      );
    }
  } else if (grpcService !== undefined) {
    fail('grpcService', 'is for the grpc kind only');
  }
  if (
    database !== undefined &&
    (typeof database !== 'string' || !/^[a-z][a-z0-9_]*$/.test(database))
  ) {
    fail(
      'database',
      `must be a database name of lower-case letters, digits and underscores (got ${JSON.stringify(database)})`,
    );
  }
  if (!Array.isArray(calls) || calls.some((callee) => typeof callee !== 'string')) {
    fail('calls', `must be a list of app names (got ${JSON.stringify(calls)})`);
  }
  const callees = calls as string[];
  if (new Set(callees).size !== callees.length) fail('calls', 'names an app twice');
  if (callees.includes(name)) fail('calls', 'names the app itself');
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1) {
    fail('replicas', `must be a whole number of at least 1 (got ${JSON.stringify(replicas)})`);
  }
  if (typeof nodeOptions !== 'string') {
    fail('nodeOptions', `must be a string of node flags (got ${JSON.stringify(nodeOptions)})`);
  }
  return {
    name,
    packageName,
    kind: kind as AppKind,
    port: port as number,
    portVariable: portVariable as string,
    ...(grpcService === undefined ? {} : { grpcService: grpcService as string }),
    ...(database === undefined ? {} : { database: database as string }),
    calls: callees,
    replicas: replicas as number,
    nodeOptions: nodeOptions as string,
  };
}

/**
 * Checks the apps as a whole and returns them in start order: each after the apps it calls
 * (ties by name, so the order is stable). An unknown callee, a cycle, a port, port variable or
 * database used twice, or more than one gateway is an error naming it.
 */
export function inStartOrder(apps: readonly AppManifest[]): AppManifest[] {
  const byName = new Map(apps.map((app) => [app.name, app]));
  for (const app of apps) {
    for (const callee of app.calls) {
      if (!byName.has(callee)) {
        throw new ManifestError(
          `apps/${app.name}/package.json: "service".calls names ${JSON.stringify(callee)}, which is no app (the apps are ${[...byName.keys()].sort().join(', ')})`,
        );
      }
      if (byName.get(callee)!.kind !== 'grpc') {
        throw new ManifestError(
          `apps/${app.name}/package.json: "service".calls names ${JSON.stringify(callee)}, which is not of kind "grpc" (only gRPC services are called)`,
        );
      }
    }
  }
  const unique = (what: string, value: (app: AppManifest) => string | number | undefined) => {
    const seen = new Map<string | number, string>();
    for (const app of apps) {
      const key = value(app);
      if (key === undefined) continue;
      const other = seen.get(key);
      if (other)
        throw new ManifestError(
          `apps/${other} and apps/${app.name} have the same ${what} (${key})`,
        );
      seen.set(key, app.name);
    }
  };
  unique('"service".port', (app) => app.port);
  unique('"service".portVariable', (app) => app.portVariable);
  unique('"service".database', (app) => app.database);
  const gateways = apps.filter((app) => app.kind === 'gateway').map((app) => app.name);
  if (gateways.length > 1) {
    throw new ManifestError(`more than one app is of kind "gateway": ${gateways.join(', ')}`);
  }

  const ordered: AppManifest[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (app: AppManifest, path: string[]) => {
    if (state.get(app.name) === 'done') return;
    if (state.get(app.name) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(app.name)), app.name];
      throw new ManifestError(`the apps call each other in a cycle: ${cycle.join(' -> ')}`);
    }
    state.set(app.name, 'visiting');
    for (const callee of [...app.calls].sort()) visit(byName.get(callee)!, [...path, app.name]);
    state.set(app.name, 'done');
    ordered.push(app);
  };
  for (const app of [...apps].sort((a, b) => a.name.localeCompare(b.name))) visit(app, []);
  return ordered;
}

/**
 * Every app under `root`/apps whose package.json has a `service` key, checked, in start order.
 * Read once per process for the default root (it does not change while the system runs).
 */
export function loadManifest(root: string = ROOT): readonly AppManifest[] {
  if (root === ROOT && cached) return cached;
  const appsDir = join(root, 'apps');
  const apps: AppManifest[] = [];
  for (const entry of readdirSync(appsDir, { withFileTypes: true })) {
    const file = join(appsDir, entry.name, 'package.json');
    if (!entry.isDirectory() || !existsSync(file)) continue;
    let json: { name?: unknown; service?: unknown };
    try {
      json = JSON.parse(readFileSync(file, 'utf8')) as typeof json;
    } catch (error) {
      throw new ManifestError(
        `apps/${entry.name}/package.json is not valid JSON: ${(error as Error).message}`,
      );
    }
    if (json.service === undefined) continue;
    if (typeof json.name !== 'string') {
      throw new ManifestError(`apps/${entry.name}/package.json: "name" is missing`);
    }
    apps.push(parseAppManifest(entry.name, json.name, json.service));
  }
  const ordered = inStartOrder(apps);
  if (root === ROOT) cached = ordered;
  return ordered;
}
let cached: readonly AppManifest[] | undefined;

/** The app called `name`, or an error listing the apps there are. */
export function appManifest(
  name: string,
  apps: readonly AppManifest[] = loadManifest(),
): AppManifest {
  const app = apps.find((candidate) => candidate.name === name);
  if (!app) {
    throw new ManifestError(
      `no app is called ${JSON.stringify(name)} (the apps are ${apps.map((a) => a.name).join(', ')})`,
    );
  }
  return app;
}
