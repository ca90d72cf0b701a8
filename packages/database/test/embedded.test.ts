import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { databaseName, withDatabase } from '../src/admin';

describe('embedded PostgreSQL', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pg-embedded-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts a real server, creates databases idempotently, and keeps data across restarts', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(__dirname, 'fixtures', 'restart.cjs'), dataDir],
      {
        timeout: 60_000,
      },
    );
    const result = JSON.parse(stdout) as { version: string; rows: unknown[]; restartMs: number };
    expect(Number(result.version.split('.')[0])).toBeGreaterThanOrEqual(15);
    expect(result.rows).toEqual([{ v: 42 }]);
  });
});

describe('connection strings', () => {
  it('swaps and reads the database name', () => {
    const url = withDatabase('postgresql://u:p@127.0.0.1:5432/postgres?sslmode=disable', 'order');
    expect(url).toBe('postgresql://u:p@127.0.0.1:5432/order?sslmode=disable');
    expect(databaseName(url)).toBe('order');
  });
});
