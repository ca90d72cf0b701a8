import type { AppProcess, RunningSystem } from '@repo/system/system';
import { Client } from 'pg';
import { MOUSE, api, signUp, sleep, startTestSystem, type Api } from './system';

interface LoadResult {
  statuses: Map<number, number>;
  networkErrors: number;
  created: number;
}

/**
 * A bounded load: `workers` loops placing one-unit orders (each with a fresh Idempotency-Key) for
 * `durationMs`. A request that fails at the network level backs off briefly instead of spinning.
 */
async function placeOrders(
  baseUrl: string,
  token: string,
  workers: number,
  durationMs: number,
): Promise<LoadResult> {
  const result: LoadResult = { statuses: new Map(), networkErrors: 0, created: 0 };
  const until = Date.now() + durationMs;
  let sequence = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < until) {
        try {
          const response = await fetch(`${baseUrl}/v1/orders`, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              Authorization: `Bearer ${token}`,
              'Idempotency-Key': `load-${++sequence}`,
            },
            body: JSON.stringify({ items: [{ productId: MOUSE, quantity: 1 }] }),
          });
          await response.arrayBuffer();
          result.statuses.set(response.status, (result.statuses.get(response.status) ?? 0) + 1);
          if (response.status === 201) result.created++;
          else await sleep(20);
        } catch {
          result.networkErrors++;
          await sleep(20);
        }
      }
    }),
  );
  return result;
}

async function countOrders(client: Api, token: string): Promise<number> {
  let count = 0;
  let pageToken: string | null = null;
  do {
    const page = await client.get(
      `/v1/orders?pageSize=100${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ''}`,
      token,
    );
    expect(page.status).toBe(200);
    count += page.body.orders.length;
    pageToken = page.body.nextPageToken;
  } while (pageToken);
  return count;
}

describe('graceful shutdown under load', () => {
  let system: RunningSystem;
  let client: Api;

  beforeAll(async () => {
    system = await startTestSystem();
    client = api(system.gatewayUrl!);
  });

  afterAll(async () => {
    await system?.stop();
  });

  async function withOrderDatabase<T>(use: (db: Client) => Promise<T>): Promise<T> {
    const db = new Client({ connectionString: system.envs.order!.DATABASE_URL });
    await db.connect();
    try {
      return await use(db);
    } finally {
      await db.end();
    }
  }

  async function terminateDuringLoad(target: AppProcess) {
    const me = await signUp(client, `shutdown-${target.name}`);
    // Enough stock that no order is refused for want of it (a fast machine places hundreds here;
    // the seed has 400 mice), so every answer is about the shutdown.
    await withOrderDatabase((db) =>
      db.query('UPDATE products SET stock = 1000000 WHERE id = $1', [MOUSE]),
    );
    const load = placeOrders(system.gatewayUrl!, me.token, 8, 3_000);
    await sleep(1_000);
    const exitCode = await target.stop('SIGTERM');
    const result = await load;
    if (process.env.E2E_REPORT)
      process.stdout.write(
        `${target.name} ${JSON.stringify({ ...result, statuses: [...result.statuses] })}\n`,
      );
    await target.start();
    return { me, result, exitCode };
  }

  it('SIGTERM to the gateway: every request completes or is refused before it starts', async () => {
    const { me, result, exitCode } = await terminateDuringLoad(system.apps.gateway!);
    expect(exitCode).toBe(0);
    // No 5xx other than 503 reached a client.
    for (const status of result.statuses.keys()) expect([201, 503]).toContain(status);
    expect(result.created).toBeGreaterThan(0);
    // Nothing was half-done: the orders that exist are exactly those whose 201 reached the client,
    // so every request that failed on the network was refused before it was processed.
    expect(await countOrders(client, me.token)).toBe(result.created);
  });

  it('SIGTERM to the order service: in-flight orders complete, the rest get 503', async () => {
    const { me, result, exitCode } = await terminateDuringLoad(system.apps.order!);
    expect(exitCode).toBe(0);
    expect(result.networkErrors).toBe(0); // the gateway stayed up throughout
    for (const status of result.statuses.keys()) expect([201, 503]).toContain(status);
    expect(result.statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(result.created).toBeGreaterThan(0);
    let listed = -1;
    for (let attempt = 0; attempt < 50 && listed < 0; attempt++) {
      try {
        listed = await countOrders(client, me.token);
      } catch {
        await sleep(200); // the order service is coming back
      }
    }
    expect(listed).toBe(result.created);
  });
});
