import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ensureDatabase, withDatabase } from './admin';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded';
import { migrateDeploy } from './migrate';
import { TEMPLATE_URL_ENV } from './testing';

declare global {
  var __embeddedPostgres: { server: EmbeddedPostgres; dataDir: string } | undefined;
}

/**
 * Jest global setup for packages that own a Prisma schema: a real PostgreSQL (the one named by
 * TEST_DATABASE_URL, or an embedded server in a temporary directory) with one migrated template
 * database. Test files copy it with `createTestDatabase()`.
 */
export default async function globalSetup(
  _globalConfig: unknown,
  projectConfig: { rootDir: string },
): Promise<void> {
  const appDir = projectConfig.rootDir;
  let serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) {
    const dataDir = mkdtempSync(join(tmpdir(), 'pg-test-'));
    // Ephemeral: if Jest is killed before its teardown, the server still stops and its data goes.
    const server = await startEmbeddedPostgres({ dataDir, ephemeral: true });
    globalThis.__embeddedPostgres = { server, dataDir };
    serverUrl = server.serverUrl;
  }
  const template = `template_${basename(appDir).replace(/\W/g, '_')}_${process.pid}`;
  await ensureDatabase(serverUrl, template);
  const templateUrl = withDatabase(serverUrl, template);
  await migrateDeploy({ appDir, databaseUrl: templateUrl });
  process.env[TEMPLATE_URL_ENV] = templateUrl;
}
