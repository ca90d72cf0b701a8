#!/usr/bin/env node
// Writes a new migration for the app in the current directory:
//   pnpm --filter @repo/user migration:new add_phone_number   (after pnpm build)
// It diffs the schema as committed (git HEAD) against prisma/schema.prisma as it is now, with
// `prisma migrate diff`, and writes prisma/migrations/<timestamp>_<name>/migration.sql. Review the
// SQL, commit it with the schema, and every start (or the compose migration job) applies it with
// `prisma migrate deploy`. (`prisma migrate dev` cannot run here: it needs a native engine download.)
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { withDatabase } from './admin';
import { startEmbeddedPostgres } from './embedded';

async function main(): Promise<void> {
  const name = process.argv[2];
  if (!name || !/^[a-z0-9_]+$/.test(name)) {
    process.stderr.write('usage: new-migration <snake_case_name>\n');
    process.exit(2);
  }
  const appDir = process.cwd();
  const schemaPath = join(appDir, 'prisma', 'schema.prisma');
  if (!existsSync(schemaPath)) throw new Error(`no prisma/schema.prisma in ${appDir}`);

  const scratch = mkdtempSync(join(tmpdir(), 'new-migration-'));
  chmodSync(scratch, 0o755);
  const repoRoot = execFileSync('git', ['rev-parse', '--show-toplevel'], {
    encoding: 'utf8',
  }).trim();
  const committed = join(scratch, 'committed.prisma');
  let from = ['--from-empty'];
  try {
    const text = execFileSync('git', ['show', `HEAD:${relative(repoRoot, schemaPath)}`], {
      encoding: 'utf8',
    });
    writeFileSync(committed, text);
    from = ['--from-schema-datamodel', committed];
  } catch {
    // No committed schema yet: the first migration starts from an empty database.
  }

  // The Prisma CLI runs its engine through the pg adapter, which wants a reachable server even for
  // a datamodel-to-datamodel diff: a throwaway embedded one.
  const server = await startEmbeddedPostgres({ dataDir: join(scratch, 'postgres') });
  try {
    const cli = require.resolve('prisma/build/index.js', { paths: [appDir] });
    const sql = execFileSync(
      process.execPath,
      [cli, 'migrate', 'diff', ...from, '--to-schema-datamodel', schemaPath, '--script'],
      {
        cwd: appDir,
        encoding: 'utf8',
        env: { ...process.env, DATABASE_URL: withDatabase(server.serverUrl, 'postgres') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    if (!/\b(CREATE|ALTER|DROP)\b/.test(sql)) {
      process.stdout.write('no schema changes since the last commit: nothing to write\n');
      return;
    }
    const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
    const dir = join(appDir, 'prisma', 'migrations', `${stamp}_${name}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'migration.sql'), sql);
    process.stdout.write(
      `wrote ${relative(process.cwd(), join(dir, 'migration.sql'))}: review it, then commit it\n`,
    );
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
