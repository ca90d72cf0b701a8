import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDatabase } from '@repo/database/admin';
import { APPS, startSystem, type AppName, type RunningSystem } from '@repo/system/system';
import { SignJWT } from 'jose';
import { Client } from 'pg';
import type { HttpRequestSpec } from './load';

export const log = (line: string) => process.stdout.write(`bench | ${line}\n`);
export const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

export interface BenchSystem {
  system: RunningSystem;
  gatewayUrl: string;
  orderDatabaseUrl: string;
  tokens: string[];
  productIds: string[];
  /** Stock per product right after seeding. */
  initialStock: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * The whole system in production mode (logs at warn, a rate limit far above the load), seeded with
 * `users` users (through the API: each costs one scrypt hash), bearer tokens minted with the
 * gateway's secret (the bench is the operator), and ample stock (a fixture: there is no admin API).
 */
export async function startBenchSystem(options: {
  users: number;
  /** Processes per app (default one each). */
  replicas?: Partial<Record<AppName, number>>;
  nodeArgs?: Partial<Record<AppName, string[]>>;
  /** Aborting it makes a start in progress stop what it started. */
  signal?: AbortSignal;
  /** The Node.js binary the apps run on (default: the bench's own). */
  nodePath?: string;
  /** Prefix of this system's log lines (two systems run side by side with --compare-node). */
  label?: string;
  /** More environment for every app (--compare-tracing's OTEL_* settings). */
  env?: Record<string, string>;
}): Promise<BenchSystem> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-'));
  chmodSync(dataDir, 0o755);
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  const jwtSecret = randomBytes(32).toString('base64url');
  // BENCH_NODE_OPTIONS: try other V8 flags on every app (production mode sets PRODUCTION_NODE_OPTIONS).
  const nodeOptions: Record<string, string> = process.env.BENCH_NODE_OPTIONS
    ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS }
    : {};
  log(`starting the system (production mode, logs at warn) on a fresh PostgreSQL in ${dataDir}`);
  const system = await startSystem({
    dataDir,
    nodeEnv: 'production',
    logLevel: 'warn',
    env: {
      ...Object.fromEntries(APPS.map((app) => [app, { ...nodeOptions, ...options.env }])),
      // A rate limit far above the load, unless RATE_LIMIT_MAX says otherwise.
      gateway: {
        JWT_SECRET: jwtSecret,
        RATE_LIMIT_MAX: process.env.RATE_LIMIT_MAX || '1000000000',
        ...nodeOptions,
        ...options.env,
      },
      // Registrations (R1, R2) keep the hashing queue at most HASH_CONCURRENCY long; on a starved
      // machine one hash alone can outlast the 500 ms wait limit, which would then shed them
      // all. Unless HASH_QUEUE_WAIT_MAX_MS says otherwise, the callers' deadlines decide instead.
      user: {
        HASH_QUEUE_WAIT_MAX_MS: process.env.HASH_QUEUE_WAIT_MAX_MS || '5000',
        // E1 matches the user outbox's rows with the order inbox's after the fact (./events.ts).
        // Not the order service's: S3 measures its outbox as production runs it.
        OUTBOX_RETAIN_SENT_MS: '3600000',
        ...nodeOptions,
        ...options.env,
      },
    },
    replicas: options.replicas,
    nodeArgs: options.nodeArgs,
    nodePath: options.nodePath,
    onLog: (source, line) => {
      if (source !== 'postgres')
        process.stdout.write(`${options.label ?? ''}${source} | ${line}\n`);
    },
    signal: options.signal,
    ephemeral: true,
  }).catch((error: unknown) => {
    removeDataDir();
    throw error;
  });
  const stop = async () => {
    await system.stop();
    removeDataDir();
  };
  try {
    return await seed(system, jwtSecret, options.users, stop, options.signal);
  } catch (error) {
    // A failed seeding (a 504, say) must not leave the system running.
    await stop();
    throw error;
  }
}

/** Users through the API (each costs one scrypt hash), their tokens, and ample stock. */
async function seed(
  system: RunningSystem,
  jwtSecret: string,
  users: number,
  stop: () => Promise<void>,
  signal: AbortSignal | undefined,
): Promise<BenchSystem> {
  const gatewayUrl = system.gatewayUrl!;
  const orderDatabaseUrl = withDatabase(system.serverUrl, 'order');

  log(`seeding ${users} users`);
  const userIds: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < users) {
        signal?.throwIfAborted();
        const n = next++;
        const body = JSON.stringify({
          email: `bench-${n}-${randomUUID()}@example.com`,
          name: `Bench ${n}`,
          password: 'bench password 123',
        });
        // As a well-behaved client: the user service sheds load with 503 when hashing is
        // saturated, a 504 means it was not done (or, if its answer was lost, a retry returns it),
        // and a 409 with Retry-After means the same key is still in progress; a retry with the
        // same Idempotency-Key is safe in every case.
        const idempotencyKey = randomUUID();
        let response: Response;
        for (let attempt = 1; ; attempt++) {
          response = await fetch(`${gatewayUrl}/v1/users`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
            body,
          });
          const retryable =
            response.status === 503 ||
            response.status === 504 ||
            (response.status === 409 && response.headers.has('retry-after'));
          if (!retryable || attempt === 50) break;
          await response.arrayBuffer();
          await new Promise((resolve) => setTimeout(resolve, 100 * Math.min(attempt, 5)));
        }
        if (response.status !== 201)
          throw new Error(`seeding a user failed: ${response.status} ${await response.text()}`);
        userIds.push(((await response.json()) as { id: string }).id);
      }
    }),
  );
  const key = new TextEncoder().encode(jwtSecret);
  const tokens = await Promise.all(
    userIds.map((id) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(id)
        .setIssuer('microservices-reference')
        .setAudience('microservices-reference-api')
        .setIssuedAt()
        .setExpirationTime('2h')
        .sign(key),
    ),
  );
  const pg = new Client({ connectionString: orderDatabaseUrl });
  await pg.connect();
  await pg.query('UPDATE products SET stock = 1000000');
  const initialStock = new Map(
    (await pg.query<{ id: string; stock: number }>('SELECT id, stock FROM products')).rows.map(
      (row) => [row.id, row.stock],
    ),
  );
  await pg.end();

  return {
    system,
    gatewayUrl,
    orderDatabaseUrl,
    tokens,
    productIds: [...initialStock.keys()],
    initialStock,
    stop,
  };
}

/** The request each HTTP scenario sends, chosen at random per request. */
export function scenarioRequest(
  id: 's1' | 's2' | 's3' | 'register',
  bench: BenchSystem,
): () => HttpRequestSpec {
  switch (id) {
    case 's1':
      return () => ({ method: 'GET', path: `/v1/products/${pick(bench.productIds)}` });
    case 's2':
      return () => ({
        method: 'GET',
        path: '/v1/users/me',
        headers: { authorization: `Bearer ${pick(bench.tokens)}` },
      });
    case 's3':
      return () => {
        const lines = 1 + Math.floor(Math.random() * 3);
        const products = [...new Set(Array.from({ length: lines }, () => pick(bench.productIds)))];
        return {
          method: 'POST',
          path: '/v1/orders',
          headers: {
            authorization: `Bearer ${pick(bench.tokens)}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({
            items: products.map((productId) => ({ productId, quantity: 1 })),
          }),
        };
      };
    case 'register':
      // A new email each time: every request costs one scrypt hash (the CPU-bound part).
      return () => ({
        method: 'POST',
        path: '/v1/users',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          email: `bench-r-${randomUUID()}@example.com`,
          name: 'Bench Registration',
          password: 'bench password 123',
        }),
      });
  }
}

/**
 * Stock against orders, in one statement (one snapshot): for every product, the units missing from
 * stock must be exactly the units in its non-cancelled order lines. Returns the products that are off.
 */
export async function stockMismatches(
  bench: BenchSystem,
): Promise<{ id: string; initial: number; stock: number; sold: number }[]> {
  const pg = new Client({ connectionString: bench.orderDatabaseUrl });
  await pg.connect();
  try {
    const { rows } = await pg.query<{ id: string; stock: number; sold: string }>(
      `SELECT p.id, p.stock, COALESCE(SUM(i.quantity) FILTER (WHERE o.status <> 'CANCELLED'), 0) AS sold
         FROM products p
         LEFT JOIN order_items i ON i.product_id = p.id
         LEFT JOIN orders o ON o.id = i.order_id
        GROUP BY p.id, p.stock`,
    );
    return rows
      .map((row) => ({
        id: row.id,
        initial: bench.initialStock.get(row.id) ?? 0,
        stock: row.stock,
        sold: Number(row.sold),
      }))
      .filter((row) => row.stock < 0 || row.initial - row.stock !== row.sold);
  } finally {
    await pg.end();
  }
}
