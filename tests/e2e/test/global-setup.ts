import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '@repo/database/embedded';

declare global {
  var __e2ePostgres: { server: EmbeddedPostgres; dataDir: string } | undefined;
}

/** One real PostgreSQL for the run; each test file starts its own system with its own databases. */
export default async function globalSetup(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'e2e-'));
  chmodSync(dataDir, 0o755); // as root, PostgreSQL runs as an unprivileged user that must enter it
  // Ephemeral: if Jest is killed before its teardown, the server still stops and its data goes.
  const server = await startEmbeddedPostgres({
    dataDir: join(dataDir, 'postgres'),
    ephemeral: true,
  });
  globalThis.__e2ePostgres = { server, dataDir };
  process.env.E2E_DATABASE_URL = server.serverUrl;
}
