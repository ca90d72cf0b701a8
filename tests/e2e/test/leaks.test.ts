// Nothing outlives what started it: the bench and the `pnpm dev` runner, ended every way they can
// end (a failure, SIGTERM, SIGKILL), leave no PostgreSQL, app or baseline process behind, and a
// fresh data directory is removed. Processes are told apart by the process tree each command had,
// never by name: other PostgreSQL servers and apps on the machine are left alone.
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processesMatching } from '@repo/database/testing';
import { ROOT } from '@repo/system/system';
import { Watched, postgresDataDir } from './processes';

const bench = (env: Record<string, string> = {}) =>
  new Watched(
    process.execPath,
    [join(ROOT, 'tooling/bench/dist/cli.js'), '--quick', '--users', '20', '--check'],
    { env: { ...process.env, ...env } },
  );

/** The processes of a bench run: PostgreSQL (keeper and server), the three apps, the baselines. */
function expectFullTree(run: Watched): void {
  const commands = run.processes.map((p) => p.command).join('\n');
  expect(commands).toMatch(/postgres-keeper\.js/);
  expect(commands).toMatch(/\/postgres -D /);
  for (const app of ['user', 'order', 'gateway']) {
    expect(commands).toContain(`apps/${app}/dist/main.js`);
  }
}

async function expectNothingLeft(run: Watched): Promise<void> {
  const dataDir = postgresDataDir(run.processes);
  expect(dataDir).toBeDefined();
  await run.allGone();
  expect(processesMatching(dataDir!)).toEqual([]);
}

describe('nothing is left running', () => {
  const runs: Watched[] = [];
  const started = (run: Watched) => {
    runs.push(run);
    return run;
  };
  afterEach(() => {
    for (const run of runs.splice(0)) run.killAll();
  });

  it('when the bench fails (its seeding gets a 504)', async () => {
    // A 1 ms route deadline turns every sign-up into a 504, as a starved machine did.
    const run = started(bench({ ROUTE_DEADLINE_MS: '1' }));
    const { code } = await run.exited;
    expect(run.lines.join('\n')).toMatch(/seeding a user failed: 504/);
    expect(code).toBe(1);
    await expectNothingLeft(run);
    expect(existsSync(postgresDataDir(run.processes)!)).toBe(false);
  });

  it('when the bench gets SIGTERM mid-way', async () => {
    const run = started(bench());
    await run.waitFor(/warm-up/);
    expectFullTree(run);
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    expect(code).toBe(1);
    await expectNothingLeft(run);
    expect(existsSync(postgresDataDir(run.processes)!)).toBe(false);
  });

  it('when the bench is SIGKILLed mid-way (nothing in it can clean up)', async () => {
    const run = started(bench());
    await run.waitFor(/warm-up/);
    expectFullTree(run);
    run.child.kill('SIGKILL');
    await run.exited;
    await expectNothingLeft(run);
  });

  it('when the parent of the `pnpm dev` runner dies', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'e2e-runner-'));
    chmodSync(dataDir, 0o755); // reachable by PostgreSQL's user when run as root
    try {
      // A shell stands for turbo or a terminal: killed outright, it leaves the runner orphaned.
      const run = started(
        new Watched(
          '/bin/sh',
          ['-c', `"${process.execPath}" "$0"; :`, join(ROOT, 'tooling/system/dist/cli.js')],
          {
            env: {
              ...process.env,
              DATA_DIR: dataDir,
              GATEWAY_PORT: '0',
              USER_GRPC_PORT: '0',
              ORDER_GRPC_PORT: '0',
              NODE_ENV: 'production',
              LOG_LEVEL: 'warn',
            },
          },
        ),
      );
      await run.waitFor(/ready in/);
      const processes = run.processes;
      run.child.kill('SIGKILL');
      await run.waitFor(/parent process \d+ exited: stopping/);
      await run.waitFor(/stopped$/);
      await expectNothingLeft(run);
      expect(processes.length).toBeGreaterThan(5);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
