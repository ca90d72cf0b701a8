import { tmpdir } from 'node:os';
import { startSystem, type AppName, type LogSink, type RunningSystem } from '@repo/system/system';

let counter = 0;

/**
 * The whole system as real processes, started exactly as `pnpm dev` starts it (production mode),
 * on the run's PostgreSQL with databases of its own.
 */
export async function startTestSystem(
  gatewayEnv: Record<string, string> = {},
  options: {
    /** Extra environment for the services. */
    env?: { user?: Record<string, string>; order?: Record<string, string> };
    /** Every log line of every app, besides E2E_VERBOSE's printing. */
    onLog?: LogSink;
    /** How many processes of each app (default 1 each). */
    replicas?: Partial<Record<AppName, number>>;
  } = {},
): Promise<RunningSystem> {
  const prefix = `e2e_${process.pid}_${++counter}`;
  const verbose = process.env.E2E_VERBOSE;
  return startSystem({
    dataDir: tmpdir(), // unused: the run's PostgreSQL is given by URL
    databaseUrl: process.env.E2E_DATABASE_URL!,
    databaseNames: { user: `${prefix}_user`, order: `${prefix}_order` },
    nodeEnv: 'production',
    logLevel: 'warn',
    replicas: options.replicas,
    env: {
      gateway: { RATE_LIMIT_MAX: '100000', DRAIN_DELAY_MS: '0', ...gatewayEnv },
      user: { DRAIN_DELAY_MS: '0', ...options.env?.user },
      order: { DRAIN_DELAY_MS: '0', ...options.env?.order },
    },
    onLog:
      verbose || options.onLog
        ? (source, line) => {
            if (verbose) process.stdout.write(`${source} | ${line}\n`);
            options.onLog?.(source, line);
          }
        : undefined,
  });
}

export interface Api {
  get(path: string, token?: string): Promise<{ status: number; body: any; headers: Headers }>;
  post(
    path: string,
    body?: unknown,
    token?: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }>;
}

/** A tiny HTTP client for the gateway: plain fetch, JSON in and out. */
export function api(baseUrl: string): Api {
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    token?: string,
    headers: Record<string, string> = {},
  ) => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (metrics, docs)
    }
    return { status: response.status, body: parsed as any, headers: response.headers };
  };
  return {
    get: (path, token) => call('GET', path, undefined, token),
    post: (path, body, token, headers) => call('POST', path, body, token, headers),
  };
}

export const MOUSE = '0b7d3e4a-1c2f-4a5b-8c6d-000000000002';
export const KEYBOARD = '0b7d3e4a-1c2f-4a5b-8c6d-000000000001';

export async function signUp(
  client: Api,
  tag: string,
): Promise<{ id: string; token: string; email: string }> {
  const email = `${tag}-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const password = 'correct horse battery staple';
  const created = await client.post('/v1/users', { email, name: tag, password });
  if (created.status !== 201)
    throw new Error(`sign-up failed: ${created.status} ${JSON.stringify(created.body)}`);
  const login = await client.post('/v1/auth/token', { email, password });
  return { id: created.body.id, token: login.body.accessToken, email };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
