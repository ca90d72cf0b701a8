// `pnpm gen service` (turbo/generators/config.ts) on a copy of the repository: the service it writes
// builds, passes lint, type checking and its own tests, starts with the system, and passes the
// deployment checks (compose, Kubernetes, dashboards, alerts); an existing name is refused before
// anything is written.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repository = join(__dirname, '../../..');
const NAME = 'stock';

/**
 * The environment of what runs in the copy: this one's, without JEST_SUMMARY_DIR (the copy's Jest
 * runs are this test's steps, not packages of the CI summary).
 */
function copyEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.JEST_SUMMARY_DIR;
  return env;
}

/** Runs a command in the copy; its output is returned, and shown when it fails. */
function run(copy: string, command: string, args: string[], cwd = copy): string {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    // Nothing asks for input: the generator's prompts get --args, and an unanswered one fails.
    env: copyEnv({ CI: 'true', FORCE_COLOR: '0' }),
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${result.stdout}${result.stderr}`;
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status}:\n${output.slice(-4000)}`,
    );
  }
  return output;
}

/** `pnpm gen service` without prompts; its exit status and output. */
function generate(copy: string, name: string, port: number) {
  const result = spawnSync('pnpm', ['gen', 'service', '--args', name, String(port), 'false'], {
    cwd: copy,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    // The test installs once itself, offline, after generating.
    env: copyEnv({ FORCE_COLOR: '0', SKIP_INSTALL: '1' }),
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/**
 * Run in the copy: starts its whole system as `pnpm start` does (production mode, every app of the
 * manifest), prints what it saw as the last line, and stops everything it started.
 */
const CHECK_SYSTEM = `
const { MANIFEST, startSystem } = require('./tooling/system/dist/system.js');
const { checkHealth } = require('./packages/service-kit/dist/health-client.js');
const [name, grpcService] = process.argv.slice(2);
const prefix = 'generator_' + process.pid;
(async () => {
  const system = await startSystem({
    dataDir: require('node:os').tmpdir(),
    databaseUrl: process.env.E2E_DATABASE_URL,
    databaseNames: {
      ...Object.fromEntries(MANIFEST.filter((app) => app.database).map((app) => [app.name, prefix + '_' + app.database])),
      events: prefix + '_events',
    },
    nodeEnv: 'production',
    logLevel: 'warn',
    env: Object.fromEntries(MANIFEST.map((app) => [app.name, { DRAIN_DELAY_MS: '0', EVENTS_TRANSPORT: 'postgres', EVENTS_NAMESPACE: prefix }])),
  });
  try {
    const health = await checkHealth('127.0.0.1:' + system.apps[name].port, grpcService);
    const readyz = (await fetch(system.gatewayUrl + '/readyz')).status;
    console.log(JSON.stringify({ started: Object.keys(system.apps), health, readyz }));
  } finally {
    await system.stop();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
`;

describe('pnpm gen service', () => {
  let copy: string;

  beforeAll(() => {
    // The tracked files (and new ones not ignored) as they are in this checkout, then an install
    // from the local store: no network, about a second.
    copy = mkdtempSync(join(tmpdir(), 'generator-'));
    const files = execFileSync(
      'git',
      ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      {
        cwd: repository,
        encoding: 'utf8',
      },
    )
      .split('\0')
      .filter((file) => file && existsSync(join(repository, file)));
    for (const file of files) {
      cpSync(join(repository, file), join(copy, file), { recursive: true });
    }
    // A repository of its own, so that what the generator writes shows in `git status`.
    run(copy, 'git', ['init', '-q']);
    run(copy, 'git', ['add', '-A']);
    run(copy, 'git', [
      '-c',
      'user.name=test',
      '-c',
      'user.email=test@example.com',
      'commit',
      '-qm',
      'copy',
    ]);
    run(copy, 'pnpm', ['install', '--offline', '--frozen-lockfile=false']);
  }, 120_000);

  afterAll(() => {
    if (copy) rmSync(copy, { recursive: true, force: true });
  });

  it('refuses a name that exists, naming what exists, and writes nothing', () => {
    const { status, output } = generate(copy, 'user', 50099);
    expect(status).not.toBe(0);
    expect(output).toContain('"user" exists already: apps/user, proto/user');
    expect(run(copy, 'git', ['status', '--porcelain', '--', 'apps', 'proto', 'deploy'])).toBe('');
  });

  it('refuses a name that is not lowercase letters and digits', () => {
    const { status, output } = generate(copy, 'Stock-1', 50099);
    expect(status).not.toBe(0);
    expect(output).toContain('is not a service name');
  });

  it('writes a service that builds, lints, type-checks and passes its tests; compose and Kubernetes know it', () => {
    const { status, output } = generate(copy, NAME, 50053);
    expect({ status, output }).toMatchObject({ status: 0 });
    const app = join(copy, 'apps', NAME);
    const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({
      name: `@repo/${NAME}`,
      service: {
        kind: 'grpc',
        port: 50053,
        grpcService: `${NAME}.v1.StockService`,
        database: NAME,
      },
    });

    const compose = readFileSync(join(copy, 'docker-compose.yml'), 'utf8');
    for (const service of [`${NAME}-db:`, `${NAME}-migrate:`, `${NAME}:`, `${NAME}-db-data:`]) {
      expect(compose).toMatch(new RegExp(`^ {2}${service}`, 'm'));
    }
    const kustomization = readFileSync(
      join(copy, 'deploy/kubernetes/base/kustomization.yaml'),
      'utf8',
    );
    expect(kustomization).toMatch(new RegExp(`^ {2}- ${NAME}$`, 'm'));
    const deployment = readFileSync(
      join(copy, `deploy/kubernetes/base/${NAME}/deployment.yaml`),
      'utf8',
    );
    expect(deployment).toContain(`service: ${NAME}.v1.StockService`);
    expect(deployment).not.toMatch(/\buser\b(?! is `node`)/);
    expect(existsSync(join(copy, `deploy/observability/grafana/dashboards/${NAME}.json`))).toBe(
      true,
    );
    expect(
      readFileSync(join(copy, 'deploy/kubernetes/overlays/production/kustomization.yaml'), 'utf8'),
    ).toContain(`- { name: ${NAME}, count: 2 }`);
    const contracts = JSON.parse(
      readFileSync(join(copy, 'packages/contracts/package.json'), 'utf8'),
    );
    expect(Object.keys(contracts.exports)).toEqual(
      expect.arrayContaining([`./${NAME}/v1`, `./${NAME}/v1/events`]),
    );

    run(copy, 'pnpm', ['install', '--offline', '--frozen-lockfile=false']);
    // Its dependencies' builds, buf lint of the new proto (the contracts' lint), its lint and types.
    run(copy, 'pnpm', [
      'turbo',
      'run',
      'build',
      'lint',
      'typecheck',
      `--filter=@repo/${NAME}...`,
      '--output-logs=errors-only',
    ]);
    const tests = run(copy, 'pnpm', ['exec', 'jest'], app);
    expect(tests).toMatch(/Tests: +\d+ passed, \d+ total/);
    run(copy, 'pnpm', [
      'exec',
      'prettier',
      '--check',
      `apps/${NAME}`,
      'docker-compose.yml',
      'docker-compose.observability.yml',
      'deploy/kubernetes',
      'deploy/observability',
      'tooling/apps/package.json',
      'packages/contracts/package.json',
    ]);
  }, 600_000);

  it('starts with the whole system: the runner finds it, SERVING in gRPC health, the gateway ready', () => {
    // The copy's runner (its ROOT is the copy), on the run's PostgreSQL with databases of its own.
    run(copy, 'pnpm', [
      'turbo',
      'run',
      'build',
      '--filter=@repo/system...',
      '--filter=@repo/apps...',
      '--output-logs=errors-only',
    ]);
    writeFileSync(join(copy, 'check-system.cjs'), CHECK_SYSTEM);
    const output = run(copy, 'node', ['check-system.cjs', NAME, `${NAME}.v1.StockService`]);
    expect(JSON.parse(output.trim().split('\n').pop()!)).toEqual({
      started: expect.arrayContaining(['user', 'order', NAME, 'gateway']),
      health: 'SERVING',
      readyz: 200,
    });
  }, 300_000);

  it("passes the repository's deployment checks as it is: compose, Kubernetes, dashboards and alerts", () => {
    // Built by the step above (everything the runner starts, and what the checks import).
    run(copy, 'pnpm', ['exec', 'jest'], join(copy, 'deploy'));
    // The compose checks of the end-to-end deploy test (the image builds are left to the repo's own run).
    run(
      copy,
      'pnpm',
      ['exec', 'jest', 'test/deploy.test.ts', '-t', 'docker-compose.yml'],
      join(copy, 'tests/e2e'),
    );
  }, 300_000);
});
