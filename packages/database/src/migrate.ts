import { spawn } from 'node:child_process';

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
 */
export async function migrateDeploy({ appDir, databaseUrl }: MigrateOptions): Promise<void> {
  const cli = require.resolve('prisma/build/index.js', { paths: [appDir] });
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
