import { join } from 'node:path';
import { databaseName, ensureDatabase, withDatabase } from './admin';
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

/**
 * Gives a service its database: the server named by `databaseUrl`, or else a real PostgreSQL
 * started from npm in `dataDir`. Either way the database exists and is migrated on return.
 */
export async function provisionDatabase(options: ProvisionOptions): Promise<ProvisionedDatabase> {
  if (options.databaseUrl) {
    const url = options.databaseUrl;
    await ensureDatabase(url, databaseName(url));
    if (options.migrate) await migrateDeploy({ appDir: options.appDir, databaseUrl: url });
    return { url, embedded: false, stop: () => Promise.resolve() };
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
