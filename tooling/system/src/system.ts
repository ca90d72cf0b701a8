import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureDatabase, withDatabase } from '@repo/database/admin';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '@repo/database/embedded';
import { freePort } from '@repo/service-kit/ports';
import { checkHealth } from '@repo/service-kit/health-client';
import {
  ROOT,
  appManifest,
  loadManifest,
  serviceAddressVariable,
  type AppManifest,
} from './manifest';
import { PROPAGATION_DELAY_MS, Registry, type ServiceName } from './registry';
import { listensOn } from './sockets';

export { ROOT, loadManifest, type AppManifest } from './manifest';
export { PROPAGATION_DELAY_MS, SERVICES, type ServiceName } from './registry';
export { listensOn } from './sockets';

/** An app's name: its directory under apps/ (the apps are those of the manifest, manifest.ts). */
export type AppName = string;
/** The apps' manifests, in start order: each app after the apps it calls. */
export const MANIFEST: readonly AppManifest[] = loadManifest();
/** Start order: each app's dependencies come before it. Stop order is the reverse. */
export const APPS: readonly AppName[] = MANIFEST.map((app) => app.name);
/** The app of kind `gateway` (the public HTTP API), if the system has one. */
export const GATEWAY_APP: AppName | undefined = MANIFEST.find(
  (app) => app.kind === 'gateway',
)?.name;

const byApp = <T>(value: (app: AppManifest) => T): Readonly<Record<AppName, T>> =>
  Object.fromEntries(MANIFEST.map((app) => [app.name, value(app)]));

export const appEntry = (app: AppName) => join(ROOT, 'apps', app, 'dist', 'main.js');
/** Preloaded into every process the runner starts: it stops when the runner is gone. */
export const WATCHDOG = join(__dirname, 'watchdog.js');

/** Default ports of `pnpm dev` (tests pass 0: a free port each). */
export const DEFAULT_PORTS: Readonly<Record<AppName, number>> = byApp((app) => app.port);

/** The variable each app takes its port from (its manifest's portVariable). */
export const PORT_VARIABLE: Readonly<Record<AppName, string>> = byApp((app) => app.portVariable);

/** The variable each app takes the address it listens on from: its port variable's `_HOST` twin. */
const hostVariable = (app: AppManifest) => app.portVariable.replace(/_PORT$/, '_HOST');

/** The most replicas of one app the runner starts: more only makes a small machine swap. */
export const MAX_REPLICAS = 8;

/**
 * Whether gateway replicas can share one port: each listens with SO_REUSEPORT (GATEWAY_REUSE_PORT)
 * and the kernel spreads connections among them. Node.js balances that way on Linux; on macOS and
 * Windows `listen({ reusePort: true })` fails, so there the gateway runs once.
 */
export const SHARED_PORTS = process.platform === 'linux';

/** A failure a person can act on; the runner prints its message as one line. */
export class SystemError extends Error {
  override readonly name = 'SystemError';
}

/**
 * V8 heap limits per app in production mode (each manifest's nodeOptions), the same as each app's
 * image sets (the deploy test checks). Under load V8 otherwise grows each heap well past what these apps keep alive: on
 * Node 24 the naive baseline, which has no limits, peaks at 240-290 MB per process (`pnpm bench`).
 *
 * Tuned on Node 24 with `pnpm bench` (b1,s1,s2,s3, 3 interleaved rounds, 4 settings compared):
 * a 64 MB old space (was 96 on Node 20) keeps peak RSS at 130-141 MB (gateway), 125-133 (order),
 * 109-125 (user). The gateway's semi-space (half of the young generation) is 8 MB: its per-request
 * garbage dies young; on Node 20 16 MB was 11-19% cheaper per request than 4, but on Node 24 16 MB
 * measured S2/B1 0.53-0.61 against 0.79-0.84 for 8 MB, and 7-15 MB more RSS. The services keep
 * 4 MB (2 MB saved no memory).
 */
export const PRODUCTION_NODE_OPTIONS: Readonly<Record<AppName, string>> = byApp(
  (app) => app.nodeOptions,
);

/** A process of an app: `user` for the first one started, then `user#2`, `user#3`... */
export type ReplicaLabel = string;
/** Who a log line comes from: a process of an app (its label), `postgres` or `system` (the runner). */
export type LogSource = string;
export type LogSink = (source: LogSource, line: string) => void;

export interface SystemOptions {
  /** Where the embedded PostgreSQL keeps its data (reused across starts). */
  dataDir: string;
  /** Use this PostgreSQL server instead of an embedded one (databases are created in it). */
  databaseUrl?: string | undefined;
  /**
   * Database names per app that has one (default: its manifest's `database`), and `events` of the
   * events broker database (default `events`; used with the `postgres` events transport).
   */
  databaseNames?: Partial<Record<string, string>>;
  apps?: readonly AppName[];
  /**
   * Per app; 0 or absent picks a free port. A service's first replica listens on it, the others on
   * free ports; every gateway replica listens on the gateway's.
   */
  ports?: Partial<Record<AppName, number>>;
  /** How many replicas of each app to start (default 1, at most MAX_REPLICAS). */
  replicas?: Partial<Record<AppName, number>>;
  nodeEnv?: 'development' | 'production';
  logLevel?: string;
  /** Extra environment per app. */
  env?: Partial<Record<AppName, Record<string, string>>>;
  /** Extra `node` flags per app (e.g. `--cpu-prof`). */
  nodeArgs?: Partial<Record<AppName, string[]>>;
  /** The Node.js binary the apps run on (default: the one running this); the bench compares two. */
  nodePath?: string;
  onLog?: LogSink;
  readyTimeoutMs?: number;
  /** Aborting it makes a start in progress stop what it started and reject. */
  signal?: AbortSignal;
  /** Remove the embedded PostgreSQL's data once it stops, however this process ends (tests). */
  ephemeral?: boolean;
  /**
   * Told each time a replica reports ready: started with the system, added, a replacement, or
   * started again after a stop (the CLI watches each run for a crash).
   */
  onReady?: (process: AppProcess) => void;
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

/**
 * What a process's system is told, and asked, as the process comes and goes: how registration for
 * discovery follows the process, whoever starts or stops it (startSystem's replicas, a test that
 * stops and starts `system.apps.user` in place, watch mode).
 */
export interface Membership {
  /** What its log lines are prefixed with. */
  readonly label: ReplicaLabel;
  /** Whether another process of the system listens on this one's port (gateway replicas share one). */
  sharesPort(process: AppProcess): boolean;
  /** It reports ready: clients may find it from now on. */
  ready(process: AppProcess): void;
  /** It is about to be sent `signal`: resolves once clients no longer pick it. */
  stopping(process: AppProcess, signal: NodeJS.Signals): Promise<void>;
  /** It exited, asked to or not. */
  exited(process: AppProcess): void;
}

/** One app as a real child process: `node apps/<app>/dist/main.js`. */
export class AppProcess {
  private child: ChildProcess | undefined;
  private exit: Promise<number | null> = Promise.resolve(null);
  private crash: Promise<number | null> = new Promise(() => undefined);
  private stopAsked = false;
  /** The stop under way, if one is: a second stop() waits for it rather than signalling again. */
  private stopping: Promise<number | null> | undefined;
  /** Whether this run shares its port with another process: then a probe of the port may reach either. */
  private sharedPort = false;
  private recent: string[] = [];
  /** What the manifest says of its app. */
  readonly manifest: AppManifest;

  constructor(
    readonly name: AppName,
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly onLog: LogSink,
    private readonly readyTimeoutMs: number,
    /** Extra `node` flags, e.g. `--cpu-prof` for profiling. */
    private readonly nodeArgs: readonly string[] = [],
    private readonly signal?: AbortSignal,
    /** The Node.js binary to run the app with. */
    private readonly nodePath: string = process.execPath,
    /** The system it is part of, if any (startSystem's processes). */
    private readonly membership?: Membership,
  ) {
    this.manifest = appManifest(name, MANIFEST);
  }

  /** What its log lines are prefixed with: `user`, `user#2`, ... */
  get label(): ReplicaLabel {
    return this.membership?.label ?? this.name;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Its Prometheus metrics: the gateway's on its API port, a service's on its METRICS_PORT. */
  get metricsUrl(): string {
    const port = this.manifest.kind === 'gateway' ? this.port : this.env.METRICS_PORT;
    return `http://127.0.0.1:${port}/metrics`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  /**
   * Spawns the process and resolves once it reports ready (health SERVING, or /readyz 200 from the
   * process itself), then tells its system (which lists it for discovery).
   */
  async start(): Promise<void> {
    if (!existsSync(appEntry(this.name))) {
      throw new SystemError(
        `apps/${this.name} is not built: run \`pnpm build\` first (\`pnpm dev\` builds for you)`,
      );
    }
    // A replica joining those on a shared port finds it in use, by design.
    this.sharedPort = this.membership?.sharesPort(this) ?? false;
    if (!this.sharedPort && !(await portIsFree(this.port))) {
      throw new SystemError(
        `port ${this.port} (for ${this.label}) is already in use: stop whatever holds it, or choose another port`,
      );
    }
    // Detached: a Ctrl-C in the terminal reaches only the runner, which stops the apps in order.
    const child = spawn(
      this.nodePath,
      [...this.nodeArgs, '--require', WATCHDOG, appEntry(this.name)],
      {
        cwd: join(ROOT, 'apps', this.name),
        env: { ...process.env, ...this.env },
        // stdin stays open as a lifeline: see watchdog.ts.
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      },
    );
    this.child = child;
    this.recent = [];
    const record = (line: string) => {
      this.recent.push(line);
      if (this.recent.length > 30) this.recent.shift();
      this.onLog(this.label, line);
    };
    createInterface({ input: child.stdout }).on('line', record);
    createInterface({ input: child.stderr }).on('line', record);
    this.exit = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    this.stopAsked = false;
    this.stopping = undefined;
    // Pending for good when this run ends by stop() (a restart, or the system stopping).
    this.crash = this.exit.then((code) => (this.stopAsked ? new Promise(() => undefined) : code));
    void this.exit.then(() => this.membership?.exited(this));
    await this.waitUntilReady();
    if (!this.stopAsked) this.membership?.ready(this);
  }

  private async probe(): Promise<boolean> {
    try {
      if (this.manifest.kind === 'gateway') {
        if (this.sharedPort && !listensOn(this.pid!, this.port)) return false;
        return (await fetch(`${this.url}/readyz`)).status === 200;
      }
      return (await checkHealth(this.address, this.manifest.grpcService, 500)) === 'SERVING';
    } catch {
      return false;
    }
  }

  private async waitUntilReady(): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (Date.now() < deadline) {
      this.signal?.throwIfAborted();
      if (!this.running) {
        throw new SystemError(
          `${this.label} exited during start-up:\n  ${this.recent.slice(-10).join('\n  ')}`,
        );
      }
      if (await this.probe()) return;
      await sleep(25);
    }
    throw new SystemError(`${this.label} was not ready after ${this.readyTimeoutMs} ms`);
  }

  /**
   * Sends `signal` and waits for the exit code; SIGKILL after `timeoutMs`. In a system, a graceful
   * stop first takes the process out of discovery and gives clients time to notice; a SIGKILL does
   * not (it stands for a crash: the process is unlisted once it has exited).
   */
  stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (!this.running) return this.exit;
    if (this.stopping) {
      if (signal === 'SIGKILL') this.child!.kill(signal);
      return this.stopping;
    }
    this.stopAsked = true;
    const child = this.child!;
    this.stopping = (async () => {
      await this.membership?.stopping(this, signal);
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await this.exit;
      clearTimeout(timer);
      return code;
    })();
    return this.stopping;
  }

  /** The exit code once the process has exited. */
  exited(): Promise<number | null> {
    return this.exit;
  }

  /**
   * The exit code if the current run of the process ends without stop() being asked for (it
   * crashed, or quit by itself); never resolves otherwise. A start() begins a new run.
   */
  crashed(): Promise<number | null> {
    return this.crash;
  }
}

export interface RunningSystem {
  /** Each app's first replica (live: after a rolling restart, the first of the new ones). */
  apps: Partial<Record<AppName, AppProcess>>;
  /**
   * Every replica of each app, live: added and replaced ones join, removed ones leave. One that
   * crashed stays until it is started again, replaced or removed.
   */
  replicas: Readonly<Record<AppName, readonly AppProcess[]>>;
  /** The environment each app was started with (to start another instance alike). */
  envs: Readonly<Record<AppName, Record<string, string>>>;
  /** The gateway's base URL, when the gateway is part of the system. */
  gatewayUrl: string | undefined;
  /** Superuser connection string of the PostgreSQL server in use (no database). */
  serverUrl: string;
  /**
   * The discovery files: per service, the `host:port` of each replica that is ready, one a line
   * (clients are given `file://` + the path). The directory is removed when the system stops.
   */
  discovery: { dir: string; files: Readonly<Record<ServiceName, string>> };
  /**
   * Starts one more replica of `app` (a service on a free port, a gateway on the shared port),
   * waits until it is ready and lists it for discovery. `env` overrides some of its environment
   * (a fault test gives one replica its own route to the database, say).
   */
  addReplica(app: AppName, options?: { env?: Record<string, string> }): Promise<AppProcess>;
  /**
   * Takes a replica out of discovery, waits PROPAGATION_DELAY_MS for clients to notice, sends
   * SIGTERM (it drains in-flight calls) and waits for it to exit.
   */
  removeReplica(process: AppProcess): Promise<void>;
  /**
   * Replaces every replica of `apps` (default: all), app by app in dependency order, one replica at
   * a time: a replacement starts, is ready and listed, then the old one is removed as above, so
   * capacity never drops. Rejects at the first replacement that does not start (the old replica
   * it was to replace keeps running).
   */
  rollingRestart(apps?: readonly AppName[]): Promise<void>;
  /**
   * Stops every replica, apps in reverse start order (SIGTERM, so they drain), then PostgreSQL,
   * and removes the discovery files.
   */
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL (embedded, unless databaseUrl is given) with one database per service, then each
 * app's replicas as real processes in dependency order, waiting for each to be ready before the
 * next. Every service migrates its own database at start-up. The services find each other through
 * discovery files (see registry.ts): a replica is listed once ready, unlisted before it stops.
 */
export async function startSystem(options: SystemOptions): Promise<RunningSystem> {
  const apps = options.apps ?? APPS;
  const onLog: LogSink = options.onLog ?? (() => undefined);
  const nodeEnv = options.nodeEnv ?? 'development';
  const logLevel = options.logLevel ?? 'info';
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  options.signal?.throwIfAborted();

  for (const app of [...(options.apps ?? []), ...Object.keys(options.replicas ?? {})]) {
    if (!APPS.includes(app)) {
      throw new SystemError(`no app is called ${app} (the apps are ${APPS.join(', ')})`);
    }
  }
  const gateway = GATEWAY_APP;
  const counts = {} as Record<AppName, number>;
  for (const app of APPS) {
    const count = options.replicas?.[app] ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > MAX_REPLICAS) {
      throw new SystemError(
        `replicas of ${app} must be a whole number from 1 to ${MAX_REPLICAS} (got ${count})`,
      );
    }
    counts[app] = count;
  }
  if (gateway && counts[gateway]! > 1 && !SHARED_PORTS) throw sharedPortsMissing();

  const ports = {} as Record<AppName, number>;
  for (const app of APPS) {
    const wanted = options.ports?.[app];
    ports[app] = wanted ? wanted : await freePort();
  }
  for (const app of apps) {
    if (!existsSync(appEntry(app))) {
      throw new SystemError(
        `apps/${app} is not built: run \`pnpm build\` first (\`pnpm dev\` builds for you)`,
      );
    }
  }

  let postgres: EmbeddedPostgres | undefined;
  let serverUrl = options.databaseUrl;
  if (!serverUrl) {
    try {
      postgres = await startEmbeddedPostgres({
        dataDir: join(options.dataDir, 'postgres'),
        onLog: (line) => onLog('postgres', line),
        ephemeral: options.ephemeral,
      });
    } catch (error) {
      throw new SystemError(
        `the embedded PostgreSQL would not start (${error instanceof Error ? error.message.split('\n')[0] : String(error)}); ` +
          `delete ${join(options.dataDir, 'postgres')} to start afresh, or set DATABASE_URL`,
      );
    }
    serverUrl = postgres.serverUrl;
  }
  const databaseName = (app: AppManifest) => options.databaseNames?.[app.name] ?? app.database!;
  const databaseUrl = (name: string) => withDatabase(serverUrl, name);
  const registry = new Registry();

  // What the person running the system set wins over the runner's defaults, except the wiring the
  // runner owns: ports (chosen above, from the same variables in `pnpm dev`), the discovery files
  // the services are found through, and each service's database.
  const given = (name: string, fallback: string) => process.env[name] || fallback;
  const jwtSecret = given('JWT_SECRET', randomBytes(32).toString('base64url'));
  const common = {
    NODE_ENV: nodeEnv,
    LOG_LEVEL: logLevel,
    // Events (see @repo/events): on the embedded PostgreSQL, in a broker database that belongs to
    // no service, unless EVENTS_TRANSPORT=nats (then NATS_URL, default nats://127.0.0.1:4222).
    EVENTS_TRANSPORT: given('EVENTS_TRANSPORT', 'postgres'),
    EVENTS_DATABASE_URL: given(
      'EVENTS_DATABASE_URL',
      databaseUrl(options.databaseNames?.events ?? 'events'),
    ),
    ...(process.env.NATS_URL ? { NATS_URL: process.env.NATS_URL } : {}),
    // No load balancer watches these processes' health: the runner takes a replica out of
    // discovery before it stops it (PROPAGATION_DELAY_MS), so reporting "not ready" first would
    // only delay every stop (production mode defaults to a 5 s drain delay).
    DRAIN_DELAY_MS: '0',
  };
  const nodeOptions = (app: AppManifest): Record<string, string> =>
    nodeEnv === 'production' ? { NODE_OPTIONS: app.nodeOptions } : {};
  // Each app's wiring, from its manifest: where it listens, its database, the discovery file of
  // each app it calls (`<NAME>_SERVICE_ADDR`).
  const envOf = (app: AppManifest): Record<string, string> => ({
    ...common,
    ...nodeOptions(app),
    [hostVariable(app)]: given(hostVariable(app), '127.0.0.1'),
    [app.portVariable]: String(ports[app.name]),
    ...(app.kind === 'gateway'
      ? {
          // Always, also with one replica: a rolling restart starts the replacement beside it.
          ...(SHARED_PORTS ? { GATEWAY_REUSE_PORT: 'true' } : {}),
        }
      : {}),
    ...Object.fromEntries(
      app.calls.map((callee) => [serviceAddressVariable(callee), registry.target(callee)]),
    ),
    ...(app.database ? { DATABASE_URL: databaseUrl(databaseName(app)) } : {}),
    // One signing secret for every gateway process of the system (given, or made up for this
    // run): a token one replica issued is good at the others, and after a restart (rolling or in
    // watch mode). Left unset, each gateway process would make up its own.
    ...(app.kind === 'gateway' ? { JWT_SECRET: jwtSecret } : {}),
  });
  const envs: Record<AppName, Record<string, string>> = Object.fromEntries(
    MANIFEST.map((app) => [app.name, envOf(app)]),
  );

  const replicas: Record<AppName, AppProcess[]> = Object.fromEntries(
    APPS.map((app) => [app, [] as AppProcess[]]),
  );
  /** How many processes of each app were ever started: the next one's label. */
  const started: Record<AppName, number> = Object.fromEntries(APPS.map((app) => [app, 0]));
  let stopping = false;
  const unlist = (process: AppProcess) => {
    const list = replicas[process.name]!;
    if (list.includes(process)) list.splice(list.indexOf(process), 1);
  };

  const membership = (label: Membership['label']): Membership => ({
    label,
    sharesPort: (process) =>
      replicas[process.name]!.some(
        (other) => other !== process && other.running && other.port === process.port,
      ),
    ready: (process) => {
      registry.register(process.name, process.address);
      const metrics = process.manifest.kind === 'gateway' ? '' : `, metrics ${process.metricsUrl}`;
      onLog(
        'system',
        `${process.label} ready on ${process.address} (pid ${process.pid})${metrics}`,
      );
      options.onReady?.(process);
    },
    stopping: async (process, signal) => {
      // A SIGKILL stands for a crash, which nobody announces: the exit unlists it.
      if (signal === 'SIGKILL') return;
      // When the whole system stops, its callers have stopped before it (reverse start order).
      if (registry.deregister(process.name, process.address) && !stopping) {
        await sleep(PROPAGATION_DELAY_MS);
      }
    },
    exited: (process) => void registry.deregister(process.name, process.address),
  });

  /**
   * Starts a replica of `app` and waits until it is ready. It is listed among the replicas from
   * the start (so a stop meanwhile stops it too), right after `after` if given; if it does not
   * start, it is stopped and unlisted. A service's replica gets the configured port when no
   * replica has it (not even a stopped one, which may start again on it), otherwise a free one; a
   * gateway's gets the shared port. Each service replica serves its metrics on a free port of its
   * own (METRICS_PORT): replicas run side by side on one host.
   */
  const launch = async (
    app: AppName,
    after?: AppProcess,
    env: Record<string, string> = {},
  ): Promise<AppProcess> => {
    options.signal?.throwIfAborted();
    const isGateway = app === gateway;
    const taken = replicas[app]!.some((other) => other.port === ports[app]);
    const port = isGateway || !taken ? ports[app]! : await freePort();
    const metrics: Record<string, string> = isGateway
      ? {}
      : { METRICS_PORT: String(await freePort()) };
    if (stopping) throw new SystemError(`the system is stopping: no ${app} replica starts`);
    started[app] = started[app]! + 1;
    const label = started[app] === 1 ? app : `${app}#${started[app]}`;
    const process = new AppProcess(
      app,
      port,
      {
        ...envs[app],
        ...options.env?.[app],
        ...env,
        [PORT_VARIABLE[app]!]: String(port),
        ...metrics,
      },
      onLog,
      readyTimeoutMs,
      options.nodeArgs?.[app],
      options.signal,
      options.nodePath,
      membership(label),
    );
    const list = replicas[app]!;
    list.splice(after ? list.indexOf(after) + 1 : list.length, 0, process);
    onLog('system', `starting ${label} on port ${port}`);
    try {
      await process.start();
    } catch (error) {
      await process.stop();
      unlist(process);
      throw error;
    }
    return process;
  };

  const addReplica = async (app: AppName, after?: AppProcess, env?: Record<string, string>) => {
    if (!apps.includes(app)) throw new SystemError(`${app} is not part of this system`);
    if (app === gateway && !SHARED_PORTS && replicas[app]!.some((other) => other.running)) {
      throw sharedPortsMissing();
    }
    return launch(app, after, env);
  };

  const removeReplica = async (process: AppProcess) => {
    const list = replicas[process.name] ?? [];
    if (!list.includes(process)) throw new SystemError(`${process.label} is not a replica here`);
    onLog('system', `stopping ${process.label}`);
    await process.stop();
    // Listed until it has exited, so a stop of the whole system meanwhile waits for it too.
    unlist(process);
  };

  const stop = async () => {
    stopping = true;
    try {
      for (const app of [...APPS].reverse()) {
        if (replicas[app]!.some((process) => process.running)) onLog('system', `stopping ${app}`);
        await Promise.all(replicas[app]!.map((process) => process.stop()));
      }
      await postgres?.stop();
    } finally {
      registry.close();
    }
  };

  try {
    options.signal?.throwIfAborted();
    for (const app of MANIFEST) {
      if (app.database && apps.includes(app.name)) {
        await ensureDatabase(serverUrl, databaseName(app));
      }
    }
    // Each app starts once every app it calls (among those started) is ready; apps that do not
    // depend on each other start side by side. MANIFEST is in start order, so every callee's
    // start is under way before its caller's.
    const launched = new Map<AppName, Promise<void>>();
    for (const app of MANIFEST) {
      if (!apps.includes(app.name)) continue;
      const callees = app.calls.flatMap((callee) => launched.get(callee) ?? []);
      launched.set(
        app.name,
        Promise.all(callees).then(async () => {
          // The first one alone: it migrates its database, or checks that the gateway's port is free.
          await launch(app.name);
          await Promise.all(Array.from({ length: counts[app.name]! - 1 }, () => launch(app.name)));
        }),
      );
    }
    // The first failure stops everything (the catch below), starts still under way included: a
    // replica is listed from the moment its start begins.
    await Promise.all(launched.values());
  } catch (error) {
    await stop();
    throw error;
  }

  const first = {} as Partial<Record<AppName, AppProcess>>;
  for (const app of apps) {
    Object.defineProperty(first, app, { enumerable: true, get: () => replicas[app]![0] });
  }
  return {
    apps: first,
    replicas,
    envs,
    gatewayUrl:
      gateway && apps.includes(gateway) ? `http://127.0.0.1:${ports[gateway]}` : undefined,
    serverUrl,
    discovery: { dir: registry.dir, files: registry.files },
    addReplica: (app, added) => addReplica(app, undefined, added?.env),
    removeReplica,
    rollingRestart: async (which = apps) => {
      for (const app of APPS.filter((name) => apps.includes(name) && which.includes(name))) {
        for (const old of [...replicas[app]!]) {
          if (app === gateway && !SHARED_PORTS) {
            // No second gateway can listen beside it here: restart in place (a short outage).
            await old.stop();
            await old.start();
            continue;
          }
          await addReplica(app, old);
          await removeReplica(old);
        }
      }
    },
    stop,
  };
}

function sharedPortsMissing(): SystemError {
  return new SystemError(
    `more than one gateway needs a shared port (SO_REUSEPORT), which Node.js balances on Linux only, not on ${process.platform}`,
  );
}
