import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '@repo/database/embedded';

declare global {
  var __eventsPostgres: EmbeddedPostgres | undefined;
}

/**
 * One real PostgreSQL for the run: the server TEST_DATABASE_URL names, or an embedded one in a
 * temporary directory (ephemeral: it stops and its data goes even if Jest is killed). Test files
 * create their own databases on it (test/helpers.ts).
 */
export default async function globalSetup(): Promise<void> {
  let serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) {
    const server = await startEmbeddedPostgres({
      dataDir: mkdtempSync(join(tmpdir(), 'pg-events-test-')),
      ephemeral: true,
    });
    globalThis.__eventsPostgres = server;
    serverUrl = server.serverUrl;
  }
  process.env.EVENTS_TEST_SERVER_URL = serverUrl;
}
