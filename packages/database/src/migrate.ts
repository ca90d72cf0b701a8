import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';

export interface MigrateOptions {
  /** The app's directory: where prisma.config.ts and prisma/migrations live. */
  appDir: string;
  /** The database to migrate. */
  databaseUrl: string;
}

/**
 * Applies the app's committed migrations with `prisma migrate deploy` (never `migrate dev`: deploy
 * only applies what is committed, and never resets data). The Prisma CLI is resolved from the app
 * itself, so each service migrates with its own Prisma version and schema.
 *
 * The CLI is a dev dependency of the apps: the production images leave it (and the 80 MB it pulls
 * in) out, and migrations run beforehand from each app's `migrate` image. There a database whose
 * migrations are all applied starts without the CLI (the fast path below needs only `pg`), and one
 * with pending migrations fails with an error that says what to do.
 */
export async function migrateDeploy({ appDir, databaseUrl }: MigrateOptions): Promise<void> {
  if (await allMigrationsApplied(appDir, databaseUrl)) return;
  if (!prismaCli(appDir)) {
    throw new Error(
      'the database has migrations to apply, and the Prisma CLI is not installed here (a production ' +
        "install leaves it out): apply them first with the app's migrate image (the `migrate` " +
        'target of its Dockerfile runs `prisma migrate deploy`), then start the service',
    );
  }
  await runPrismaMigrateDeploy(appDir, databaseUrl);
}

/** The Prisma CLI's entry point as the app resolves it, if the app has it installed. */
function prismaCli(appDir: string): string | undefined {
  try {
    return require.resolve('prisma/build/index.js', { paths: [appDir] });
  } catch {
    return undefined;
  }
}

interface LocalMigration {
  name: string;
  checksum: string;
}

/** The committed migrations, with the checksum Prisma records for each (sha256 of migration.sql). */
export function localMigrations(appDir: string): LocalMigration[] {
  const dir = join(appDir, 'prisma', 'migrations');
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, 'migration.sql')))
    .map((entry) => ({
      name: entry.name,
      checksum: createHash('sha256')
        .update(readFileSync(join(dir, entry.name, 'migration.sql')))
        .digest('hex'),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The fast path: true when `_prisma_migrations` already records every committed migration as
 * applied, unchanged (same checksum) and not rolled back. Starting the Prisma CLI costs ~10 s on a
 * 2-core machine; when there is provably nothing to apply, we do not start it. Any doubt (no
 * table, a missing or failed row, a changed file) falls through to `prisma migrate deploy`.
 */
export async function allMigrationsApplied(appDir: string, databaseUrl: string): Promise<boolean> {
  const local = localMigrations(appDir);
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const table = await client.query<{ exists: boolean }>(
      "SELECT to_regclass('public._prisma_migrations') IS NOT NULL AS exists",
    );
    if (!table.rows[0]?.exists) return false;
    const applied = await client.query<{ migration_name: string; checksum: string }>(
      'SELECT migration_name, checksum FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    const failed = await client.query(
      'SELECT 1 FROM _prisma_migrations WHERE finished_at IS NULL AND rolled_back_at IS NULL LIMIT 1',
    );
    if (failed.rowCount) return false;
    const checksums = new Map(applied.rows.map((row) => [row.migration_name, row.checksum]));
    return local.every((migration) => checksums.get(migration.name) === migration.checksum);
  } finally {
    await client.end();
  }
}

/** Always runs the Prisma CLI's `migrate deploy`. */
export async function runPrismaMigrateDeploy(appDir: string, databaseUrl: string): Promise<void> {
  const cli = prismaCli(appDir);
  if (!cli) throw new Error(`the Prisma CLI is not installed in ${appDir}`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'migrate', 'deploy'], {
      cwd: appDir,
      env: { ...process.env, DATABASE_URL: databaseUrl, PRISMA_HIDE_UPDATE_MESSAGE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`prisma migrate deploy failed (exit ${code}):\n${output.trim()}`));
    });
  });
}
