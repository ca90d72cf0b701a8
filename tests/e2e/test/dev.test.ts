// `pnpm dev` as documented: every variable an app's .env.example lists reaches that app through
// turbo (strict env mode drops what turbo.json does not pass through) and the runner; the gateway
// answers on the port it was given; Ctrl-C stops everything. Run as root, this also covers a data
// directory PostgreSQL's unprivileged user cannot reach (a private 0700 directory).
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APPS, ROOT } from '@repo/system/system';
import { Watched } from './processes';

/** The variable names an app's .env.example lists, commented-out ones included. */
function envExample(app: string): string[] {
  const text = readFileSync(join(ROOT, 'apps', app, '.env.example'), 'utf8');
  return [...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!);
}

const turboJson = (path: string) =>
  JSON.parse(readFileSync(join(ROOT, path), 'utf8')) as {
    globalEnv?: string[];
    globalPassThroughEnv?: string[];
    tasks: Record<string, { env?: string[]; passThroughEnv?: string[] }>;
  };

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether something accepts TCP connections on the port. */
const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const answer = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.once('connect', () => answer(true)).once('error', () => answer(false));
    socket.setTimeout(2_000, () => answer(false));
  });

/** An HS256 access token as the gateway would mint it with `secret`. */
function token(secret: string, subject: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    sub: subject,
    iss: 'microservices-reference',
    aud: 'microservices-reference-api',
    iat: now,
    exp: now + 600,
  })}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

describe('`pnpm dev` environment', () => {
  it.each([
    ['tooling/system/turbo.json', 'dev'],
    ['tooling/system/turbo.json', 'start'],
    ['tooling/bench/turbo.json', 'bench'],
    ['tooling/bench/turbo.json', 'profile'],
  ])('%s passes every .env.example variable through to the %s task', (path, task) => {
    const root = turboJson('turbo.json');
    const passed = [
      ...(root.globalEnv ?? []),
      ...(root.globalPassThroughEnv ?? []),
      ...(turboJson(path).tasks[task]?.env ?? []),
      ...(turboJson(path).tasks[task]?.passThroughEnv ?? []),
    ];
    // Turbo's wildcards: `*_GRPC_PORT` passes every app's port variable, a new app's too.
    const patterns = passed.map((entry) => new RegExp(`^${entry.replace(/\*/g, '[A-Z0-9_]*')}$`));
    const missing = APPS.flatMap((app) =>
      envExample(app)
        .filter((name) => !patterns.some((pattern) => pattern.test(name)))
        .map((name) => `${name} (apps/${app}/.env.example)`),
    );
    expect(missing).toEqual([]);
  });

  it('reaches the apps through turbo: ports, data directory, secret, CORS, rate limit; Ctrl-C stops it all', async () => {
    const [gatewayPort, userPort, orderPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    // mkdtemp makes it 0700: as root, PostgreSQL's unprivileged user cannot enter it.
    const dataDir = mkdtempSync(join(tmpdir(), 'e2e-dev-'));
    const secret = randomBytes(32).toString('base64url');
    const env = {
      ...process.env,
      GATEWAY_PORT: String(gatewayPort),
      USER_GRPC_PORT: String(userPort),
      ORDER_GRPC_PORT: String(orderPort),
      DATA_DIR: dataDir,
      JWT_SECRET: secret,
      CORS_ORIGINS: 'https://app.example',
      RATE_LIMIT_MAX: '7',
      LOG_LEVEL: 'warn',
    };
    // `pnpm dev` is `turbo run dev --filter=@repo/system`; --only skips the builds the test run
    // has done already. Detached: its own process group, which a terminal's Ctrl-C signals.
    const run = new Watched(
      join(ROOT, 'node_modules', '.bin', 'turbo'),
      ['run', 'dev', '--filter=@repo/system', '--only', '--log-prefix=none'],
      { cwd: ROOT, env, detached: true },
    );
    try {
      await run.waitFor(/ready in/, 120_000);
      const url = `http://127.0.0.1:${gatewayPort}`;
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect(await accepts(userPort)).toBe(true);
      expect(await accepts(orderPort)).toBe(true);

      const products = await fetch(`${url}/v1/products`, {
        headers: { Origin: 'https://app.example' },
      });
      expect(products.status).toBe(200);
      expect(products.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(products.headers.get('ratelimit-policy')).toBe('7;w=60');

      // Signed with our secret, the token passes the signature check (its user does not exist);
      // signed with another, it does not.
      const me = async (key: string) => {
        const response = await fetch(`${url}/v1/users/me`, {
          headers: { Authorization: `Bearer ${token(key, randomUUID())}` },
        });
        return { status: response.status, ...((await response.json()) as { detail: string }) };
      };
      expect(await me(secret)).toMatchObject({
        status: 401,
        detail: expect.stringMatching(/no longer exists/),
      });
      expect(await me(`${secret}x`)).toMatchObject({
        status: 401,
        detail: expect.stringMatching(/invalid/),
      });

      expect(existsSync(join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
      if (process.getuid?.() === 0) {
        expect(lstatSync(join(dataDir, 'postgres')).isSymbolicLink()).toBe(true);
      }

      process.kill(-run.child.pid!, 'SIGINT');
      const { code } = await run.exited;
      expect(run.lines.join('\n')).toMatch(/stopped/);
      expect(code).toBe(0);
      await run.allGone();
      expect(await accepts(gatewayPort)).toBe(false);
    } finally {
      run.killAll();
      // Where the cluster went when PostgreSQL's user could not reach the data directory.
      const cluster = join(dataDir, 'postgres');
      if (lstatSync(cluster, { throwIfNoEntry: false })?.isSymbolicLink() && existsSync(cluster)) {
        rmSync(realpathSync(cluster), { recursive: true, force: true });
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
