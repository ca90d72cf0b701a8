// `pnpm gen service`: a new gRPC service in the shape of apps/user (see "Adding a service" in the
// README). Without prompts: `pnpm gen service --args <name> <port> <routes: true|false>`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { PlopTypes } from '@turbo/gen';

const root = resolve(__dirname, '../..');
const templates = join(__dirname, 'templates/service');
const gatewayTemplates = join(__dirname, 'templates/gateway-routes');
const NAME_PATTERN = /^[a-z][a-z0-9]*$/;

interface Answers {
  name: string;
  port: string;
  routes: boolean | string;
}

/** Why `name` cannot be a new service, or undefined when it can. */
export function refusal(name: string): string | undefined {
  if (!NAME_PATTERN.test(name)) {
    return `"${name}" is not a service name: lowercase letters and digits, starting with a letter`;
  }
  const taken = [
    `apps/${name}`,
    `proto/${name}`,
    `packages/${name}`,
    `deploy/kubernetes/base/${name}`,
  ].filter((path) => existsSync(join(root, path)));
  if (taken.length > 0) return `"${name}" exists already: ${taken.join(', ')}`;
  return undefined;
}

/** The default ports the apps declare (package.json `service.port`, else src/config.ts). */
function portsInUse(pattern: RegExp, fromManifest: boolean): number[] {
  const ports: number[] = [];
  for (const app of readdirSync(join(root, 'apps'))) {
    const manifest = join(root, 'apps', app, 'package.json');
    if (!existsSync(manifest)) continue;
    const service = (JSON.parse(readFileSync(manifest, 'utf8')) as { service?: { port?: number } })
      .service;
    if (fromManifest && service?.port) {
      ports.push(service.port);
      continue;
    }
    const config = join(root, 'apps', app, 'src/config.ts');
    if (!existsSync(config)) continue;
    for (const match of readFileSync(config, 'utf8').matchAll(pattern))
      ports.push(Number(match[1]));
  }
  return ports;
}

const nextPort = (ports: number[], floor: number) =>
  Math.max(floor, ...ports.filter((port) => port >= floor && port < floor + 1000)) + 1;

/** The next gRPC port after the existing apps' (50051, 50052, ... -> 50053). */
export const suggestedPort = () =>
  nextPort(portsInUse(/_GRPC_PORT: env\.port\((\d+)\)/g, true), 50050);
const suggestedMetricsPort = () =>
  nextPort(portsInUse(/METRICS_PORT: env\.port\((\d+)\)/g, false), 9100);

function templateFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? templateFiles(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

function stamp(): string {
  return new Date().toISOString().replace(/\D/g, '').slice(0, 14);
}

/**
 * A file written for the user service, for the new one: its names, service and ports; not the
 * word "user" where it means an operating-system user.
 */
function renamed(text: string, data: Record<string, string | number>): string {
  return text
    .replace(/user\.v1\.UserService/g, `${data.name}.v1.${data.Name}Service`)
    .replace(/USER_GRPC_PORT/g, `${data.NAME}_GRPC_PORT`)
    .replace(/50051/g, String(data.port))
    .replace(/9101/g, String(data.metricsPort))
    .replace(/(?<!`\w+` |non-root )\buser\b(?! is `node`)/g, String(data.name));
}

/** Every file of the user service's `deploy/kubernetes/base/user` with the new name and ports. */
function kubernetesFiles(data: Record<string, string | number>): Map<string, string> {
  const from = join(root, 'deploy/kubernetes/base/user');
  const files = new Map<string, string>();
  for (const file of readdirSync(from)) {
    let text = renamed(readFileSync(join(from, file), 'utf8'), data);
    if (file === 'kustomization.yaml') {
      // Password hashing is the user service's own setting.
      text = text.replace(
        /\n *# Concurrent password hashes[^\n]*\n[^\n]*\n *- HASH_CONCURRENCY=1/,
        '',
      );
    }
    if (file === 'network-policy.yaml') {
      // Only the gateway may call a new service until others are given its address.
      text = text
        .replace(
          /the gateway and the order service \(on its gRPC port\), and\n# /,
          'the gateway (on its gRPC port), and ',
        )
        .replace(/\n *- podSelector:\n *matchLabels:\n *app\.kubernetes\.io\/name: order/, '');
    }
    files.set(`deploy/kubernetes/base/${data.name}/${file}`, text);
  }
  const db = readFileSync(
    join(root, 'deploy/kubernetes/overlays/local/databases/user-db.yaml'),
    'utf8',
  );
  files.set(`deploy/kubernetes/overlays/local/databases/${data.name}-db.yaml`, renamed(db, data));
  return files;
}

/** Inserts `text` before the first line matching `before` (which must exist). */
function insertBefore(file: string, before: RegExp, text: string): void {
  const path = join(root, file);
  const content = readFileSync(path, 'utf8');
  const match = before.exec(content);
  if (!match) throw new Error(`${file}: no line matching ${before} to insert before`);
  writeFileSync(path, content.slice(0, match.index) + text + content.slice(match.index));
}

/**
 * The user service's block `key` of docker-compose.yml (from its line to the next one at that
 * indentation, the blank line after it included), for copying.
 */
function composeBlock(compose: string, key: string): string {
  const lines = compose.split('\n');
  const start = lines.indexOf(`  ${key}:`);
  if (start < 0) throw new Error(`docker-compose.yml has no service "${key}" to copy`);
  let end = start + 1;
  while (end < lines.length && !/^ {0,2}\S/.test(lines[end]!)) end++;
  return `${lines.slice(start, end).join('\n')}\n`;
}

/**
 * Its database, migration job and service in docker-compose.yml: the user service's three blocks,
 * renamed, so they follow whatever the user service's do (build arguments from the manifest, the
 * health check, the events settings) without this file repeating them.
 */
function composeEntries(data: Record<string, string | number>): void {
  const { name } = data;
  const compose = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
  const copy = (key: string) => renamed(composeBlock(compose, key), data);
  insertBefore('docker-compose.yml', /^ {2}# One-shot jobs/m, copy('user-db'));
  insertBefore('docker-compose.yml', /^ {2}# The events broker/m, copy('user-migrate'));
  insertBefore('docker-compose.yml', /^ {2}# The rate-limit counters/m, copy('user'));
  insertBefore('docker-compose.yml', /^ {2}nats-data:/m, `  ${name}-db-data:\n`);
}

function kubernetesEntries(data: Record<string, string | number>): void {
  const { name } = data;
  for (const [file, text] of kubernetesFiles(data)) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), text);
  }
  insertBefore('deploy/kubernetes/base/kustomization.yaml', /^ {2}- gateway$/m, `  - ${name}\n`);
  const policies = join(root, 'deploy/kubernetes/base/network-policies.yaml');
  writeFileSync(
    policies,
    readFileSync(policies, 'utf8').replace(
      /values: \[gateway, ([a-z0-9, ]+)\]/,
      (_, apps: string) => `values: [gateway, ${apps}, ${name}]`,
    ),
  );
  insertBefore(
    'deploy/kubernetes/overlays/local/kustomization.yaml',
    /^ {2}- name: gateway$/m,
    `  - name: ${name}-database\n    literals:\n      - DATABASE_URL=postgresql://app:app@${name}-db:5432/${name}\n`,
  );
  // The apps that may reach the local overlay's NATS (its events).
  const nats = join(root, 'deploy/kubernetes/overlays/local/nats/nats.yaml');
  writeFileSync(
    nats,
    readFileSync(nats, 'utf8').replace(
      /values: \[user, order, gateway([a-z0-9, ]*)\]/g,
      (_, more: string) => `values: [user, order, gateway${more}, ${name}]`,
    ),
  );
  const databases = join(root, 'deploy/kubernetes/overlays/local/databases/kustomization.yaml');
  writeFileSync(databases, `${readFileSync(databases, 'utf8').trimEnd()}\n  - ${name}-db.yaml\n`);
}

/** Rewrites `file` (under the root) with `edit`; fails when the edit changes nothing. */
function edit(file: string, change: (text: string) => string): void {
  const path = join(root, file);
  const before = readFileSync(path, 'utf8');
  const after = change(before);
  if (after === before) throw new Error(`${file}: nothing to change (has its layout changed?)`);
  writeFileSync(path, after);
}

/** The production overlay: its images, replicas, settings, Secret and database egress. */
function productionEntries(data: Record<string, string | number>): void {
  const { name } = data;
  const overlay = 'deploy/kubernetes/overlays/production';
  edit(`${overlay}/kustomization.yaml`, (text) =>
    text
      .replace(
        /^(#\s+order-database\s+DATABASE_URL\s+)postgresql:\/\/\.\.\. of the order service's own database\n/m,
        (line: string, prefix: string) =>
          `${line}${prefix.replace('order-database', `${name}-database`.padEnd('order-database'.length))}postgresql://... of the ${name} service's own database\n`,
      )
      .replace(
        /^ {2}- \{ name: reference\/gateway,/m,
        `  - { name: reference/${name}, newName: registry.example.com/reference/${name}, newTag: 1.0.0 }\n` +
          `  - {\n      name: reference/${name}-migrate,\n      newName: registry.example.com/reference/${name}-migrate,\n      newTag: 1.0.0,\n    }\n$&`,
      )
      .replace(/^ {2}- \{ name: gateway, count: 2 \}/m, `  - { name: ${name}, count: 2 }\n$&`)
      .replace(
        /^ {2}- name: gateway-config\n(?: {4}.*\n)+/m,
        (block: string) => `${block.replace('gateway-config', `${name}-config`)}${block}`,
      ),
  );
  edit(`${overlay}/external-services.yaml`, (text) => {
    // The order database's policy, for the new one: its address is to be filled in (CHANGE).
    const order =
      /---\n(apiVersion: networking\.k8s\.io\/v1\nkind: NetworkPolicy\nmetadata:\n {2}name: order-to-order-db\n[\s\S]*?)(?=---\n)/.exec(
        text,
      );
    if (!order) throw new Error(`${overlay}/external-services.yaml: no order-to-order-db policy`);
    const policy = order[1]!
      .replace(/order/g, String(name))
      .replace(
        /(ipBlock: \{ cidr: )[\d./]+( \})/,
        `$1192.0.2.${30 + (Number(data.port) % 200)}/32$2 # CHANGE: the ${name} database's address`,
      );
    return text
      .replace(order[0], `${order[0]}---\n${policy}`)
      .replace(
        /values: \[user, order, gateway([a-z0-9, ]*)\]/g,
        (_: string, more: string) => `values: [user, order, gateway${more}, ${name}]`,
      );
  });
}

/**
 * Compose's observability file sends its traces to the collector, Prometheus scrapes it, the alerts
 * and the overview dashboard know it, and it has a dashboard.
 */
function observabilityEntries(data: Record<string, string | number>): void {
  const { name, Name } = data;
  const observability = 'deploy/observability';
  const composeObservability = readFileSync(join(root, 'docker-compose.observability.yml'), 'utf8');
  insertBefore(
    'docker-compose.observability.yml',
    /^ {2}gateway:$/m,
    `${renamed(composeBlock(composeObservability, 'user'), data)}`,
  );
  edit(`${observability}/prometheus/prometheus.yml`, (text) =>
    text.replace(
      /^ {2}- job_name: order\n(?: {4}.*\n| {6}.*\n| {8}.*\n)+/m,
      (block: string) =>
        `${block}\n${block
          .replace(/order/g, String(name))
          .replace(/port: \d+/, `port: ${data.metricsPort}`)}`,
    ),
  );
  // Every `job=~"gateway|user|order"` matcher gets the new app. (AppAbsent's absent(...) list is
  // left as it is: alerts.test.yml's unit tests give series for the apps it names.)
  const withApp = (text: string) =>
    text.replace(
      /job=~(\\?)"([a-z0-9|]+)\1"/g,
      (_: string, slash: string, jobs: string) => `job=~${slash}"${jobs}|${name}${slash}"`,
    );
  edit(`${observability}/prometheus/alerts.yml`, withApp);
  edit(`${observability}/grafana/dashboards/overview.json`, withApp);
  const dashboard = renamed(
    readFileSync(join(root, `${observability}/grafana/dashboards/user.json`), 'utf8'),
    data,
  ).replace(/User service/g, `${Name} service`);
  writeFileSync(join(root, `${observability}/grafana/dashboards/${name}.json`), dashboard);
}

/**
 * The gateway calls the new service: its route group (templates/gateway-routes) and the wiring at
 * the gateway's `// pnpm gen service: ... above this line` markers; the gateway's manifest `calls`
 * it (the runner starts it first and passes its address); compose and Kubernetes give the gateway
 * its address and let it through.
 */
function gatewayEntries(data: Record<string, string | number>): void {
  const { name, Name, NAME, port } = data;
  const gateway = 'apps/gateway';
  const marker = (what: string) =>
    new RegExp(`^ *// pnpm gen service: ${what} above this line$`, 'm');
  insertBefore(
    `${gateway}/src/config.ts`,
    marker('service addresses'),
    `    ${NAME}_SERVICE_ADDR: env.address('127.0.0.1:${port}'),\n`,
  );
  insertBefore(
    `${gateway}/src/main.ts`,
    marker('service addresses'),
    `    ${name}Address: config.${NAME}_SERVICE_ADDR,\n`,
  );
  // The gateway's tests start every app of its manifest's `calls` (test/global-setup.ts).
  insertBefore(
    `${gateway}/test/harness.ts`,
    marker('service addresses'),
    `    ${name}Address: process.env.TEST_${NAME}_ADDR!,\n`,
  );
  const backends = `${gateway}/src/backends/index.ts`;
  insertBefore(
    backends,
    marker('imports'),
    `import { ${Name}ServiceClient } from '@repo/contracts/${name}/v1';\n`,
  );
  insertBefore(backends, marker('services'), `  ${name}: '${name}.v1.${Name}Service',\n`);
  insertBefore(
    backends,
    marker('client types'),
    `  ${name}: ServiceClient<${Name}ServiceClient, keyof typeof ${Name}ServiceClient.service>;\n`,
  );
  insertBefore(backends, marker('address options'), `  ${name}Address: string;\n`);
  insertBefore(backends, marker('addresses'), `    ${name}: options.${name}Address,\n`);
  insertBefore(
    backends,
    marker('clients'),
    `    ${name}: createServiceClient(${Name}ServiceClient, addresses.${name}, callOptions('${name}')),\n`,
  );
  insertBefore(
    `${gateway}/src/app.ts`,
    marker("route groups' imports"),
    `import { ${name}Routes } from './routes/${name}';\n`,
  );
  insertBefore(
    `${gateway}/src/app.ts`,
    marker('route groups'),
    `    ...${name}Routes(backends),\n`,
  );

  const manifestPath = join(root, gateway, 'package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    service: { calls: string[] };
  };
  manifest.service.calls.push(String(name));
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  // Compose: the gateway's address of it, after the others', and it starts once the service is healthy.
  const compose = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
  const block = composeBlock(compose, 'gateway');
  const withService = block
    .replace(
      /((?: +[A-Z0-9_]+_SERVICE_ADDR: .*\n)+)/,
      `$1      ${NAME}_SERVICE_ADDR: dns:///${name}:${port}\n`,
    )
    .replace(
      /( +depends_on:\n(?: {6}[a-z0-9-]+: .*\n)*?)( {6}redis:)/,
      `$1      ${name}: { condition: service_healthy }\n$2`,
    );
  if (withService === block || !withService.includes(`${name}: { condition`))
    throw new Error(
      'docker-compose.yml: the gateway block has no *_SERVICE_ADDR or depends_on to extend',
    );
  writeFileSync(join(root, 'docker-compose.yml'), compose.replace(block, withService));

  // Kubernetes: the gateway's config names it; its network policy lets the gateway out to it.
  edit('deploy/kubernetes/base/gateway/kustomization.yaml', (text) =>
    text.replace(
      /((?: +- [A-Z0-9_]+_SERVICE_ADDR=.*\n)+)/,
      `$1      - ${NAME}_SERVICE_ADDR=dns:///${name}:${port}\n`,
    ),
  );
  edit(
    'deploy/kubernetes/base/gateway/network-policy.yaml',
    (text) =>
      `${text.trimEnd()}\n    - to:\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: ${name}\n      ports:\n        - { protocol: TCP, port: ${port} }\n`,
  );
}

/** The app in @repo/apps (tooling/apps), through which turbo builds every app the runner starts. */
function appsPackage(name: string): void {
  const path = join(root, 'tooling/apps/package.json');
  if (!existsSync(path)) return;
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as {
    devDependencies?: Record<string, string>;
  };
  const dependencies = { ...manifest.devDependencies, [`@repo/${name}`]: 'workspace:*' };
  manifest.devDependencies = Object.fromEntries(
    Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b)),
  );
  writeFileSync(path, `${JSON.stringify(manifest, null, 2)}\n`);
}

/** `./<name>/v1` and `./<name>/v1/events` in @repo/contracts' exports, before `./events/v1`. */
function contractsExports(name: string): void {
  const path = join(root, 'packages/contracts/package.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as { exports: Record<string, unknown> };
  const exports: Record<string, unknown> = {};
  const entry = (file: string) => ({
    types: `./dist/generated/${name}/v1/${file}.d.ts`,
    default: `./dist/generated/${name}/v1/${file}.js`,
  });
  for (const [key, value] of Object.entries(manifest.exports)) {
    if (key === './events/v1') {
      exports[`./${name}/v1`] = entry(name);
      exports[`./${name}/v1/events`] = entry('events');
    }
    exports[key] = value;
  }
  writeFileSync(path, `${JSON.stringify({ ...manifest, exports }, null, 2)}\n`);
}

export default function generator(plop: PlopTypes.NodePlopAPI): void {
  plop.setGenerator('service', {
    description: 'A gRPC service like apps/user: proto, contracts, app, tests, compose, Kubernetes',
    prompts: [
      {
        type: 'input',
        name: 'name',
        message: 'Service name (lowercase letters and digits, e.g. "stock"):',
        validate: (name: string) => refusal(name) ?? true,
      },
      {
        type: 'input',
        name: 'port',
        message: 'Its default gRPC port:',
        default: () => String(suggestedPort()),
        validate: (port: string) =>
          /^\d+$/.test(port) && Number(port) > 1024 && Number(port) < 65536
            ? true
            : 'a port number above 1024',
      },
      {
        type: 'confirm',
        name: 'routes',
        message: 'Add a gateway route group (POST /v1/<name>/items, GET /v1/<name>/items/:id)?',
        default: false,
      },
    ],
    actions: (answers) => {
      const { name, port, routes } = answers as Answers;
      const withRoutes = routes === true || routes === 'true';
      // Prompts validate; --args with a bad name must fail too, before anything is written.
      const refused = refusal(name);
      if (refused) throw new Error(refused);
      // Its client is `backends.<name>` and its routes `routes/<name>.ts` in the gateway.
      if (
        withRoutes &&
        (['health', 'close', 'users', 'orders'].includes(name) ||
          existsSync(join(root, `apps/gateway/src/routes/${name}.ts`)))
      ) {
        throw new Error(`"${name}" cannot have gateway routes: the gateway uses the name already`);
      }
      const data = {
        name,
        Name: name[0]!.toUpperCase() + name.slice(1),
        NAME: name.toUpperCase(),
        port: Number(port),
        metricsPort: suggestedMetricsPort(),
      };
      const written: string[] = [];
      const actions: PlopTypes.ActionType[] = templateFiles(templates).map((file) => {
        const target = relative(templates, file)
          .replace(/__name__/g, name)
          .replace(/__stamp__/g, stamp())
          .replace(/\.hbs$/, '');
        written.push(target);
        return { type: 'add', path: join(root, target), templateFile: file, data };
      });
      if (withRoutes) {
        // The route group: one file of the gateway's, from its own template.
        const target = `apps/gateway/src/routes/${name}.ts`;
        actions.push({
          type: 'add',
          path: join(root, target),
          templateFile: join(gatewayTemplates, 'apps/gateway/src/routes/__name__.ts.hbs'),
          data,
        });
      }
      actions.push(
        () => (contractsExports(name), 'packages/contracts/package.json: exports'),
        () => (appsPackage(name), 'tooling/apps/package.json: the app, for turbo'),
        () => (composeEntries(data), 'docker-compose.yml: db, migrate, service'),
        () => (kubernetesEntries(data), `deploy/kubernetes: base/${name}, local overlay`),
        () => (productionEntries(data), 'deploy/kubernetes/overlays/production'),
        () => (
          observabilityEntries(data),
          'docker-compose.observability.yml and deploy/observability: traces, Prometheus, alerts, dashboards'
        ),
        () =>
          withRoutes
            ? (gatewayEntries(data),
              `apps/gateway: /v1/${name}/items routes, its client, readiness; compose and Kubernetes: the gateway calls it`)
            : 'no gateway routes',
        () => {
          // Formatted as the repository's prettier wants (the templates are not run through it).
          execFileSync(
            'pnpm',
            [
              'exec',
              'prettier',
              '--write',
              '--log-level=warn',
              `apps/${name}`,
              'docker-compose.yml',
              'deploy',
              'tooling/apps/package.json',
              ...(withRoutes ? ['apps/gateway'] : []),
            ],
            {
              cwd: root,
              stdio: 'inherit',
            },
          );
          return 'prettier';
        },
        () => {
          if (process.env.SKIP_INSTALL) return 'pnpm install skipped (SKIP_INSTALL)';
          execFileSync('pnpm', ['install', '--prefer-offline'], { cwd: root, stdio: 'inherit' });
          return `pnpm install: @repo/${name} linked. Next: pnpm build, then pnpm dev`;
        },
      );
      return actions;
    },
  });
}
