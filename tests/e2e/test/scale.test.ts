import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import type { AppProcess, RunningSystem } from '@repo/system/system';
import { failures, percentile, startLoad } from './load';
import { MOUSE, api, signUp, sleep, startTestSystem, type Api } from './system';

/**
 * N replicas of each service behind client-side balancing (round_robin over the runner's discovery
 * files), with outlier detection and retries of idempotent reads: what one replica's failure costs
 * the callers, through the real gateway, with real processes.
 */

/** Finished RPCs per replica (label) and method, from the services' debug logs. */
function rpcCounter() {
  const counts = new Map<string, number>();
  const key = (label: string, rpc: string, code: string) => `${label} ${rpc} ${code}`;
  return {
    onLog: (source: string, line: string) => {
      if (!line.includes('"rpc"')) return;
      try {
        const record = JSON.parse(line) as { rpc?: string; code?: string };
        if (!record.rpc || !record.code) return;
        const name = key(source, record.rpc, record.code);
        counts.set(name, (counts.get(name) ?? 0) + 1);
      } catch {
        // not a JSON log line
      }
    },
    count: (label: string, rpc: string, code = 'OK') => counts.get(key(label, rpc, code)) ?? 0,
    /** Every call `label` finished for `rpc`, whatever its code. */
    total: (label: string, rpc: string) =>
      [...counts].reduce(
        (sum, [name, n]) => (name.startsWith(`${label} ${rpc} `) ? sum + n : sum),
        0,
      ),
  };
}

const GET_PRODUCT = 'order.v1.OrderService/GetProduct';
/** The seeded catalog's nine products. */
const PRODUCTS = Array.from({ length: 9 }, (_, i) => `${MOUSE.slice(0, -1)}${i + 1}`);
const GET_USER = 'user.v1.UserService/GetUser';

describe('two replicas of each service behind client-side balancing', () => {
  let system: RunningSystem;
  let client: Api;
  let token: string;
  let userId: string;
  const rpcs = rpcCounter();
  // Nine different products: the gateway coalesces concurrent reads of one product into one call.
  const product = (gatewayUrl: string) => (i: number) =>
    fetch(`${gatewayUrl}/v1/products/${PRODUCTS[i % PRODUCTS.length]}`);

  beforeAll(async () => {
    system = await startTestSystem(
      {},
      {
        replicas: { user: 2, order: 2 },
        env: { user: { LOG_LEVEL: 'debug' }, order: { LOG_LEVEL: 'debug' } },
        onLog: rpcs.onLog,
      },
    );
    client = api(system.gatewayUrl!);
    ({ token, id: userId } = await signUp(client, 'scale'));
  });

  afterAll(async () => {
    await system?.stop();
  });

  const labels = (app: 'user' | 'order') => system.replicas[app]!.map((replica) => replica.label);

  it('spreads 1,000 calls over both replicas of each service: each serves 30-70%', async () => {
    const [order1, order2] = labels('order') as [string, string];
    const [user1, user2] = labels('user') as [string, string];
    const before = {
      products: [rpcs.count(order1, GET_PRODUCT), rpcs.count(order2, GET_PRODUCT)],
      users: [rpcs.count(user1, GET_USER), rpcs.count(user2, GET_USER)],
    };
    for (let i = 0; i < 1_000; i++) {
      expect((await client.get(`/v1/products/${MOUSE}`)).status).toBe(200);
      expect((await client.get(`/v1/users/${userId}`, token)).status).toBe(200);
    }
    await sleep(200); // the last log lines
    const products = [rpcs.count(order1, GET_PRODUCT), rpcs.count(order2, GET_PRODUCT)].map(
      (n, i) => n - before.products[i]!,
    );
    const users = [rpcs.count(user1, GET_USER), rpcs.count(user2, GET_USER)].map(
      (n, i) => n - before.users[i]!,
    );
    expect(products[0]! + products[1]!).toBe(1_000);
    expect(users[0]! + users[1]!).toBe(1_000);
    for (const share of [...products, ...users]) {
      expect(share).toBeGreaterThanOrEqual(300);
      expect(share).toBeLessThanOrEqual(700);
    }
  });

  it('sends calls to a third replica started under load within a second of its being ready', async () => {
    const load = startLoad(product(system.gatewayUrl!), { clients: 4 });
    await sleep(500);
    const third = await system.addReplica('order');
    const readyAt = Date.now();
    while (rpcs.count(third.label, GET_PRODUCT) === 0 && Date.now() - readyAt < 10_000) {
      await sleep(20);
    }
    const took = Date.now() - readyAt;
    const outcomes = await load.stop();
    expect(rpcs.count(third.label, GET_PRODUCT)).toBeGreaterThan(0);
    // The runner lists it in the discovery file once it is ready; clients' resolvers watch the
    // file (inotify) and round_robin connects to the new address. Documented: well under 1 s.
    expect(took).toBeLessThan(1_000);
    expect(failures(outcomes)).toEqual([]);
    await system.removeReplica(third);
  });

  it('keeps GET /v1/products/{id} error-free and p99 < 500 ms while one of two order replicas hangs (SIGSTOP)', async () => {
    const [, second] = system.replicas.order! as [AppProcess, AppProcess];
    const load = startLoad(product(system.gatewayUrl!), { clients: 6 });
    await sleep(1_000);
    process.kill(second.pid!, 'SIGSTOP');
    try {
      await sleep(6_000);
    } finally {
      process.kill(second.pid!, 'SIGCONT');
    }
    const outcomes = await load.stop();
    const during = outcomes.filter((outcome) => outcome.at >= 1_000);
    expect(failures(outcomes)).toEqual([]);
    // Calls that land on the paused replica are abandoned after one attempt timeout (300 ms) and
    // retried on the other; within about a second outlier detection ejects it, and then no call
    // pays anything.
    expect(during.length).toBeGreaterThan(200);
    expect(
      percentile(
        during.map((outcome) => outcome.ms),
        99,
      ),
    ).toBeLessThan(500);
  });

  it('ejects a replica whose database is cut off: no failed read, and it stops getting calls', async () => {
    // A TCP proxy in front of PostgreSQL for this replica alone: cutting it is its network partition.
    const database = new URL(system.envs.order!.DATABASE_URL!);
    const proxy = new TcpProxy(await freePort(), {
      host: database.hostname,
      port: Number(database.port || 5432),
    });
    await proxy.start();
    const proxied = new URL(database.href);
    proxied.host = proxy.address;
    const cutOff = await system.addReplica('order', { env: { DATABASE_URL: proxied.href } });
    try {
      const load = startLoad(product(system.gatewayUrl!), { clients: 4 });
      await sleep(500);
      expect(rpcs.count(cutOff.label, GET_PRODUCT)).toBeGreaterThan(0);
      await proxy.stop();
      await sleep(3_000);
      const callsAt3s = rpcs.total(cutOff.label, GET_PRODUCT);
      await sleep(2_000);
      const outcomes = await load.stop();
      // Its failures were UNAVAILABLE, retried on the other replicas: the gateway saw none.
      expect(rpcs.count(cutOff.label, GET_PRODUCT, 'UNAVAILABLE')).toBeGreaterThan(0);
      expect(failures(outcomes)).toEqual([]);
      // Ejected (for 15 s) by the sweep after its first failing second: no calls reach it now.
      expect(rpcs.total(cutOff.label, GET_PRODUCT)).toBe(callsAt3s);
    } finally {
      await system.removeReplica(cutOff);
      await proxy.stop();
    }
  });

  it('answers 503 at once when every order replica is down, and the user routes keep working', async () => {
    await Promise.all(system.replicas.order!.map((replica) => replica.stop()));
    const started = Date.now();
    const products = await client.get(`/v1/products/${MOUSE}`);
    expect(products.status).toBe(503);
    expect(products.body.detail).toMatch(/order/);
    // No deadline-long wait: the channel knows no replica is up.
    expect(Date.now() - started).toBeLessThan(1_000);
    expect((await client.get(`/v1/users/${userId}`, token)).status).toBe(200);
    expect((await client.get('/v1/users/me', token)).status).toBe(200);
  });
});

describe('rolling restart of every replica of every app under load', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startTestSystem(
      // Like production: a gateway that is stopping asks its clients to close their connections
      // for a moment before it stops accepting new ones.
      { DRAIN_DELAY_MS: '500' },
      { replicas: { user: 2, order: 2, gateway: 2 } },
    );
  });

  afterAll(async () => {
    await system?.stop();
  });

  it('replaces all six processes one at a time with 0 failed requests', async () => {
    const client = api(system.gatewayUrl!);
    const { token } = await signUp(client, 'rolling');
    const before = Object.values(system.replicas)
      .flat()
      .map((replica) => replica.pid);
    const url = system.gatewayUrl!;
    // Reads of both services and writes (each with its own Idempotency-Key, never retried).
    const load = startLoad(
      (i) =>
        i % 10 === 0
          ? fetch(`${url}/v1/orders`, {
              method: 'POST',
              headers: {
                Authorization: `Bearer ${token}`,
                'Content-Type': 'application/json',
                'Idempotency-Key': `rolling-${i}`,
              },
              // Spread over the catalog's nine products, so no stock runs out.
              body: JSON.stringify({
                items: [{ productId: PRODUCTS[(i / 10) % PRODUCTS.length], quantity: 1 }],
              }),
            })
          : i % 2 === 0
            ? fetch(`${url}/v1/products/${PRODUCTS[i % PRODUCTS.length]}`)
            : fetch(`${url}/v1/users/me`, { headers: { Authorization: `Bearer ${token}` } }),
      { clients: 4, pauseMs: 10 },
    );
    await sleep(500);
    await system.rollingRestart();
    await sleep(500);
    const outcomes = await load.stop();
    const after = Object.values(system.replicas)
      .flat()
      .map((replica) => replica.pid);
    expect(after).toHaveLength(6);
    expect(after.filter((pid) => before.includes(pid))).toEqual([]);
    expect(outcomes.length).toBeGreaterThan(200);
    expect(failures(outcomes)).toEqual([]);
  });
});
