import { tmpdir } from 'node:os';
import { Client } from 'pg';
import { withDatabase } from '@repo/database/admin';
import { createNatsTransport } from '@repo/events/nats';
import {
  MANIFEST,
  startSystem,
  type AppName,
  type LogSink,
  type RunningSystem,
} from '@repo/system/system';

let counter = 0;

/** A test system, and the connection strings of its databases (to look at what a test did). */
export type TestSystem = RunningSystem & {
  /** Per app that has a database (see the manifest), and `events`, the events broker's. */
  databases: Readonly<Record<AppName, string>> & { readonly events: string };
  /** The events namespace of this system (EVENTS_NAMESPACE): its NATS stream is `EVENTS_<it>`. */
  eventsNamespace: string;
};

/**
 * The whole system as real processes, started exactly as `pnpm dev` starts it (production mode),
 * on the run's PostgreSQL with databases of its own, and events of its own: a broker database of
 * its own with the `postgres` transport, a namespace of its own on the shared NATS server with
 * `nats`.
 */
export async function startTestSystem(
  gatewayEnv: Record<string, string> = {},
  options: {
    /** Extra environment for the services, by app. */
    env?: Partial<Record<AppName, Record<string, string>>>;
    /** Every log line of every app, besides E2E_VERBOSE's printing. */
    onLog?: LogSink;
    /** How many processes of each app (default 1 each). */
    replicas?: Partial<Record<AppName, number>>;
    /** The events transport (default postgres, as `pnpm dev`). */
    eventsTransport?: 'postgres' | 'nats';
  } = {},
): Promise<TestSystem> {
  const prefix = `e2e_${process.pid}_${++counter}`;
  const verbose = process.env.E2E_VERBOSE;
  // Databases of its own: `<prefix>_<database>` for each app's database, and the broker's.
  const names: Record<string, string> = {
    ...Object.fromEntries(
      MANIFEST.flatMap((app) => (app.database ? [[app.name, `${prefix}_${app.database}`]] : [])),
    ),
    events: `${prefix}_events`,
  };
  const events = {
    EVENTS_TRANSPORT: options.eventsTransport ?? 'postgres',
    EVENTS_NAMESPACE: prefix,
  };
  const system = await startSystem({
    dataDir: tmpdir(), // unused: the run's PostgreSQL is given by URL
    databaseUrl: process.env.E2E_DATABASE_URL!,
    databaseNames: names,
    nodeEnv: 'production',
    logLevel: 'warn',
    replicas: options.replicas,
    env: Object.fromEntries(
      MANIFEST.map((app) => [
        app.name,
        app.kind === 'gateway'
          ? { RATE_LIMIT_MAX: '100000', DRAIN_DELAY_MS: '0', ...events, ...gatewayEnv }
          : { DRAIN_DELAY_MS: '0', ...events, ...options.env?.[app.name] },
      ]),
    ),
    onLog:
      verbose || options.onLog
        ? (source, line) => {
            if (verbose) process.stdout.write(`${source} | ${line}\n`);
            options.onLog?.(source, line);
          }
        : undefined,
  });
  const url = (name: string) => withDatabase(process.env.E2E_DATABASE_URL!, name);
  const stop = system.stop.bind(system);
  return Object.assign(system, {
    /** Stops the system, and with NATS removes its streams from the shared server. */
    async stop() {
      await stop();
      if (events.EVENTS_TRANSPORT === 'nats') await deleteNatsStreams(prefix);
    },
    databases: Object.fromEntries(
      Object.entries(names).map(([name, database]) => [name, url(database)]),
    ) as TestSystem['databases'],
    eventsNamespace: prefix,
  });
}

/** The streams of an events namespace on the shared NATS server (see connectTransport). */
async function deleteNatsStreams(namespace: string): Promise<void> {
  const nats = await createNatsTransport({
    stream: `EVENTS_${namespace}`,
    prefix: `events_${namespace}`,
  });
  try {
    for (const stream of [`EVENTS_${namespace}`, `EVENTS_${namespace}_DEAD`]) {
      await nats.jsm.streams.delete(stream).catch(() => undefined);
    }
  } finally {
    await nats.close();
  }
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
  // Said here, not later as a puzzling 401 for an undefined token.
  if (login.status !== 200)
    throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
  return { id: created.body.id, token: login.body.accessToken, email };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rows of a query on one of the system's databases (a connection of its own, closed after). */
export async function query<T>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}
