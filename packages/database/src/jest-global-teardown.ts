import { rmSync } from 'node:fs';
import { dropDatabase } from './admin';
import { TEMPLATE_URL_ENV } from './testing';

export default async function globalTeardown(): Promise<void> {
  const embedded = globalThis.__embeddedPostgres;
  if (embedded) {
    await embedded.server.stop();
    rmSync(embedded.dataDir, { recursive: true, force: true });
    globalThis.__embeddedPostgres = undefined;
    return;
  }
  const templateUrl = process.env[TEMPLATE_URL_ENV];
  if (templateUrl) await dropDatabase(templateUrl, new URL(templateUrl).pathname.slice(1));
}
