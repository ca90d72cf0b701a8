import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureDatabase, withDatabase } from '@repo/database/admin';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '@repo/database/embedded';
import { freePort } from '@repo/service-kit/ports';
import { checkHealth } from '@repo/service-kit/health-client';

export type AppName = 'user' | 'order' | 'gateway';
/** Start order: each app's dependencies come before it. Stop order is the reverse. */
export const APPS: readonly AppName[] = ['user', 'order', 'gateway'];

export const ROOT = resolve(__dirname, '..', '..', '..');
export const appEntry = (app: AppName) => join(ROOT, 'apps', app, 'dist', 'main.js');
/** Preloaded into every process the runner starts: it stops when the runner is gone. */
export const WATCHDOG = join(__dirname, 'watchdog.js');

/** Default ports of `pnpm dev` (tests pass 0: a free port each). */
export const DEFAULT_PORTS: Readonly<Record<AppName, number>> = {
  user: 50051,
  order: 50052,
  gateway: 3000,
};

const GRPC_SERVICE: Partial<Record<AppName, string>> = {
  user: 'user.v1.UserService',
  order: 'order.v1.OrderService',
};

/** A failure a person can act on; the runner prints its message as one line. */
export class SystemError extends Error {
  override readonly name = 'SystemError';
}

/**
 * V8 heap limits per app in production mode, the same as each app's Dockerfile sets (the deploy
 * test checks). Under load V8 otherwise grows each heap well past what these apps keep alive: on
 * Node 24 the naive baseline, which has no limits, peaks at 240-290 MB per process (`pnpm bench`).
 *
 * Tuned on Node 24 with `pnpm bench` (b1,s1,s2,s3, 3 interleaved rounds, 4 settings compared):
 * a 64 MB old space (was 96 on Node 20) keeps peak RSS at 130-141 MB (gateway), 125-133 (order),
 * 109-125 (user). The gateway's semi-space (half of the young generation) is 8 MB: its per-request
 * garbage dies young; on Node 20 16 MB was 11-19% cheaper per request than 4, but on Node 24 16 MB
 * measured S2/B1 0.53-0.61 against 0.79-0.84 for 8 MB, and 7-15 MB more RSS. The services keep
 * 4 MB (2 MB saved no memory).
 */
export const PRODUCTION_NODE_OPTIONS: Readonly<Record<AppName, string>> = {
  gateway: '--max-semi-space-size=8 --max-old-space-size=64',
  user: '--max-semi-space-size=4 --max-old-space-size=64',
  order: '--max-semi-space-size=4 --max-old-space-size=64',
};

export type LogSink = (source: AppName | 'postgres' | 'system', line: string) => void;

export interface SystemOptions {
  /** Where the embedded PostgreSQL keeps its data (reused across starts). */
  dataDir: string;
  /** Use this PostgreSQL server instead of an embedded one (databases are created in it). */
  databaseUrl?: string | undefined;
  /** Database names per service (default `user` and `order`). */
  databaseNames?: { user: string; order: string };
  apps?: readonly AppName[];
  /** Per app; 0 or absent picks a free port. */
  ports?: Partial<Record<AppName, number>>;
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
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

/** One app as a real child process: `node apps/<app>/dist/main.js`. */
export class AppProcess {
  private child: ChildProcess | undefined;
  private exit: Promise<number | null> = Promise.resolve(null);
  private crash: Promise<number | null> = new Promise(() => undefined);
  private stopAsked = false;
  private recent: string[] = [];

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
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  /** Spawns the process and resolves once it reports ready (health SERVING, or /readyz 200). */
  async start(): Promise<void> {
    if (!existsSync(appEntry(this.name))) {
      throw new SystemError(
        `apps/${this.name} is not built: run \`pnpm build\` first (\`pnpm dev\` builds for you)`,
      );
    }
    if (!(await portIsFree(this.port))) {
      throw new SystemError(
        `port ${this.port} (for ${this.name}) is already in use: stop whatever holds it, or choose another port`,
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
      this.onLog(this.name, line);
    };
    createInterface({ input: child.stdout }).on('line', record);
    createInterface({ input: child.stderr }).on('line', record);
    this.exit = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    this.stopAsked = false;
    // Pending for good when this run ends by stop() (a restart, or the system stopping).
    this.crash = this.exit.then((code) => (this.stopAsked ? new Promise(() => undefined) : code));
    await this.waitUntilReady();
  }

  private async probe(): Promise<boolean> {
    try {
      if (this.name === 'gateway') return (await fetch(`${this.url}/readyz`)).status === 200;
      return (await checkHealth(this.address, GRPC_SERVICE[this.name], 500)) === 'SERVING';
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
          `${this.name} exited during start-up:\n  ${this.recent.slice(-10).join('\n  ')}`,
        );
      }
      if (await this.probe()) return;
      await sleep(25);
    }
    throw new SystemError(`${this.name} was not ready after ${this.readyTimeoutMs} ms`);
  }

  /** Sends `signal` and waits for the exit code; SIGKILL after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (!this.running) return this.exit;
    this.stopAsked = true;
    this.child!.kill(signal);
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), timeoutMs);
    const code = await this.exit;
    clearTimeout(timer);
    return code;
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
  apps: Partial<Record<AppName, AppProcess>>;
  /** The environment each app was started with (to start another instance alike). */
  envs: Readonly<Record<AppName, Record<string, string>>>;
  /** The gateway's base URL, when the gateway is part of the system. */
  gatewayUrl: string | undefined;
  /** Superuser connection string of the PostgreSQL server in use (no database). */
  serverUrl: string;
  /** Stops the apps in reverse start order (SIGTERM, so they drain), then PostgreSQL. */
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL (embedded, unless databaseUrl is given) with one database per service, then each
 * app as a real process in dependency order, waiting for each to be ready before the next. Every
 * service migrates its own database at start-up.
 */
export async function startSystem(options: SystemOptions): Promise<RunningSystem> {
  const apps = options.apps ?? APPS;
  const onLog: LogSink = options.onLog ?? (() => undefined);
  const nodeEnv = options.nodeEnv ?? 'development';
  const logLevel = options.logLevel ?? 'info';
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  options.signal?.throwIfAborted();

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
  const names = options.databaseNames ?? { user: 'user', order: 'order' };
  const databaseUrl = (name: string) => withDatabase(serverUrl, name);

  // What the person running the system set wins over the runner's defaults, except the wiring the
  // runner owns: ports (chosen above, from the same variables in `pnpm dev`), the addresses of the
  // services it started, and each service's database.
  const given = (name: string, fallback: string) => process.env[name] || fallback;
  const jwtSecret = given('JWT_SECRET', randomBytes(32).toString('base64url'));
  const common = {
    NODE_ENV: nodeEnv,
    LOG_LEVEL: logLevel,
    // No load balancer watches these processes' health, so reporting "not ready" before stopping
    // would only delay every stop (production mode defaults to a 5 s drain delay).
    DRAIN_DELAY_MS: '0',
  };
  const nodeOptions = (app: AppName): Record<string, string> =>
    nodeEnv === 'production' ? { NODE_OPTIONS: PRODUCTION_NODE_OPTIONS[app] } : {};
  const envs: Record<AppName, Record<string, string>> = {
    user: {
      ...common,
      ...nodeOptions('user'),
      USER_GRPC_HOST: given('USER_GRPC_HOST', '127.0.0.1'),
      USER_GRPC_PORT: String(ports.user),
      DATABASE_URL: databaseUrl(names.user),
    },
    order: {
      ...common,
      ...nodeOptions('order'),
      ORDER_GRPC_HOST: given('ORDER_GRPC_HOST', '127.0.0.1'),
      ORDER_GRPC_PORT: String(ports.order),
      USER_SERVICE_ADDR: `127.0.0.1:${ports.user}`,
      DATABASE_URL: databaseUrl(names.order),
    },
    gateway: {
      ...common,
      ...nodeOptions('gateway'),
      GATEWAY_HOST: given('GATEWAY_HOST', '127.0.0.1'),
      GATEWAY_PORT: String(ports.gateway),
      USER_SERVICE_ADDR: `127.0.0.1:${ports.user}`,
      ORDER_SERVICE_ADDR: `127.0.0.1:${ports.order}`,
      // Production mode requires a secret; development generates its own (and says so) unless given.
      ...(nodeEnv === 'production' || process.env.JWT_SECRET ? { JWT_SECRET: jwtSecret } : {}),
    },
  };

  const running: Partial<Record<AppName, AppProcess>> = {};
  const stop = async () => {
    for (const app of [...APPS].reverse()) {
      const process = running[app];
      if (process) onLog('system', `stopping ${app}`);
      await process?.stop();
    }
    await postgres?.stop();
  };

  try {
    options.signal?.throwIfAborted();
    for (const name of ['user', 'order'] as const) {
      if (apps.includes(name)) await ensureDatabase(serverUrl, names[name]);
    }
    const launch = async (app: AppName) => {
      if (!apps.includes(app)) return;
      options.signal?.throwIfAborted();
      const process = new AppProcess(
        app,
        ports[app],
        { ...envs[app], ...options.env?.[app] },
        onLog,
        readyTimeoutMs,
        options.nodeArgs?.[app],
        options.signal,
        options.nodePath,
      );
      running[app] = process;
      onLog('system', `starting ${app} on port ${ports[app]}`);
      await process.start();
    };
    // The services start side by side (each migrates its own database; the order service needs the
    // user service only when an order is placed); the gateway starts once both are ready.
    await Promise.all([launch('user'), launch('order')]);
    await launch('gateway');
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    apps: running,
    envs,
    gatewayUrl: running.gateway?.url,
    serverUrl,
    stop,
  };
}
