// `pnpm gen service` (turbo/generators/config.ts) on a copy of the repository: the service it writes
// builds, passes lint, type checking and its own tests, starts with the system, and passes the
// deployment checks (compose, Kubernetes, dashboards, alerts); a second one with a gateway route
// group is called through the gateway over HTTP; an existing name is refused before anything is
// written.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repository = join(__dirname, '../../..');
const NAME = 'stock';
/** Generated with a gateway route group, after NAME, in the same copy. */
const ROUTED = 'ledger';

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

/**
 * Links what the generator added (offline: the copy has every package this checkout has), then
 * builds, lints and type-checks `packages` and what they depend on.
 */
function installAndCheck(copy: string, packages: string[]): void {
  run(copy, 'pnpm', ['install', '--offline', '--frozen-lockfile=false']);
  run(copy, 'pnpm', [
    'turbo',
    'run',
    'build',
    'lint',
    'typecheck',
    ...packages.map((name) => `--filter=${name}...`),
    '--output-logs=errors-only',
  ]);
}

/** `pnpm gen service` without prompts; its exit status and output. */
function generate(copy: string, name: string, port: number, routes = false) {
  const result = spawnSync(
    'pnpm',
    ['gen', 'service', '--args', name, String(port), String(routes)],
    {
      cwd: copy,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      // The test installs once itself, offline, after generating.
      env: copyEnv({ FORCE_COLOR: '0', SKIP_INSTALL: '1' }),
    },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/**
 * Run in the copy: starts its whole system as `pnpm start` does (production mode, every app of the
 * manifest), prints what it saw as the last line, and stops everything it started. Given an app
 * with a route group, it also signs up a user and, through the gateway, creates an item, reads it
 * back, sends a bad one, asks for an unknown id, then stops that app and asks again.
 */
const CHECK_SYSTEM = `
const { MANIFEST, startSystem } = require('./tooling/system/dist/system.js');
const { checkHealth } = require('./packages/service-kit/dist/health-client.js');
const [name, grpcService, routesApp] = process.argv.slice(2);
const items = routesApp && '/v1/' + routesApp + '/items';
const prefix = 'generator_' + process.pid;

async function routes(system) {
  const gatewayUrl = system.gatewayUrl;
  const call = async (method, path, body, token) => {
    const response = await fetch(gatewayUrl + path, {
      method,
      headers: {
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...(token ? { authorization: 'Bearer ' + token } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: await response.json() };
  };
  const email = 'generator-' + process.pid + '@example.com';
  const password = 'correct horse battery staple';
  await call('POST', '/v1/users', { email, name: 'Generator', password });
  const token = (await call('POST', '/v1/auth/token', { email, password })).body.accessToken;
  const created = await call('POST', items, { name: 'First item' }, token);
  const checks = {
    created,
    read: await call('GET', items + '/' + created.body.id, undefined, token),
    invalid: await call('POST', items, { name: '' }, token),
    unknown: (await call('GET', items + '/00000000-0000-4000-8000-000000000000', undefined, token)).status,
    anonymous: (await call('POST', items, { name: 'First item' })).status,
  };
  // The service stopped: the gateway answers for it with a 503 problem.
  await system.apps[routesApp].stop();
  return { ...checks, down: (await call('GET', items + '/' + created.body.id, undefined, token)).status };
}

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
    const readyz = await (await fetch(system.gatewayUrl + '/readyz')).json();
    console.log(JSON.stringify({
      started: Object.keys(system.apps),
      health,
      readyz,
      ...(items ? { routes: await routes(system) } : {}),
    }));
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

    // Its dependencies' builds, buf lint of the new proto (the contracts' lint), its lint and types.
    installAndCheck(copy, [`@repo/${NAME}`]);
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

  it('with a gateway route group: the gateway calls it (manifest, compose, Kubernetes), builds, lints, type-checks and passes its tests', () => {
    const { status, output } = generate(copy, ROUTED, 50054, true);
    expect({ status, output }).toMatchObject({ status: 0 });
    const gateway = JSON.parse(readFileSync(join(copy, 'apps/gateway/package.json'), 'utf8'));
    expect(gateway.service.calls).toEqual(['user', 'order', ROUTED]);
    expect(existsSync(join(copy, `apps/gateway/src/routes/${ROUTED}.ts`))).toBe(true);
    const compose = readFileSync(join(copy, 'docker-compose.yml'), 'utf8');
    expect(compose).toContain(`LEDGER_SERVICE_ADDR: dns:///${ROUTED}:50054`);
    expect(
      readFileSync(join(copy, 'deploy/kubernetes/base/gateway/kustomization.yaml'), 'utf8'),
    ).toContain(`- LEDGER_SERVICE_ADDR=dns:///${ROUTED}:50054`);

    installAndCheck(copy, ['@repo/gateway', `@repo/${ROUTED}`]);
    // The services the gateway's tests start (the runner's apps; the system test below uses them).
    run(copy, 'pnpm', [
      'turbo',
      'run',
      'build',
      '--filter=@repo/system...',
      '--filter=@repo/apps...',
      '--output-logs=errors-only',
    ]);
    // The gateway's tests that know every route and backend (the document lists and lints them,
    // /readyz checks them), against the services it calls, the new one included. The rest of its
    // suite is the same code as in this checkout, run by the gateway's own tests.
    const gatewayTests = run(
      copy,
      'pnpm',
      ['exec', 'jest', 'test/api.test.ts', 'test/openapi.test.ts', 'test/operations.test.ts'],
      join(copy, 'apps/gateway'),
    );
    expect(gatewayTests).toMatch(/Tests: +\d+ passed, \d+ total/);
    run(copy, 'pnpm', [
      'exec',
      'prettier',
      '--check',
      'apps/gateway',
      `apps/${ROUTED}`,
      'docker-compose.yml',
      'deploy/kubernetes',
    ]);
  }, 600_000);

  it('starts with the whole system: the runner finds both, the gateway ready and answering for the route group', () => {
    // The copy's runner (its ROOT is the copy, built by the step above), on the run's PostgreSQL
    // with databases of its own.
    writeFileSync(join(copy, 'check-system.cjs'), CHECK_SYSTEM);
    const output = run(copy, 'node', ['check-system.cjs', NAME, `${NAME}.v1.StockService`, ROUTED]);
    const seen = JSON.parse(output.trim().split('\n').pop()!);
    const item = { id: expect.any(String), name: 'First item', createdAt: expect.any(String) };
    expect(seen).toEqual({
      started: expect.arrayContaining(['user', 'order', NAME, ROUTED, 'gateway']),
      health: 'SERVING',
      readyz: {
        status: 'ready',
        checks: { user: 'SERVING', order: 'SERVING', [ROUTED]: 'SERVING' },
      },
      routes: {
        created: { status: 201, body: item },
        read: { status: 200, body: seen.routes.created.body },
        invalid: {
          status: 400,
          body: expect.objectContaining({ errors: [{ field: 'name', message: 'is required' }] }),
        },
        unknown: 404,
        anonymous: 401,
        down: 503,
      },
    });
  }, 300_000);

  it("passes the repository's deployment checks as it is: compose, Kubernetes, dashboards and alerts", () => {
    // Built by the steps above (everything the runner starts, and what the checks import).
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
