// Metrics as Prometheus scrapes them: the gateway on its API port, every replica of the user and
// order services on a metrics port of its own, each counting what it served, and each exposition
// accepted by `promtool check metrics`.
import { Client } from 'pg';
import { UserRegistered } from '@repo/contracts/user/v1/events';
import { newEnvelope } from '@repo/events/envelope';
import { appendToOutbox } from '@repo/events/outbox';
import { EventTypes } from '@repo/events/subjects';
import { checkMetricsWithPromtool } from '@repo/service-kit/testing';
import type { AppProcess } from '@repo/system/system';
import { KEYBOARD, api, signUp, startTestSystem, type Api, type TestSystem } from './system';

/** One sample of the text format: `name{a="x",b="y"} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k!, v!]),
    );
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of every sample of `name` whose labels include `labels`. */
function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter(
      (sample) =>
        sample.name === name &&
        Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    )
    .reduce((sum, sample) => sum + sample.value, 0);
}

const has = (samples: Sample[], name: string) => samples.some((sample) => sample.name === name);

/** Resolves once `check` holds; fails naming `what` after a minute. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still not the case after a minute: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('metrics of every process', () => {
  let system: TestSystem;
  let client: Api;
  const PRODUCT_READS = 7;

  beforeAll(async () => {
    system = await startTestSystem({}, { replicas: { user: 2, order: 2 } });
    client = api(system.gatewayUrl!);
    for (let i = 0; i < PRODUCT_READS; i++) {
      expect((await client.get(`/v1/products/${KEYBOARD}`)).status).toBe(200);
    }
    expect((await client.get('/v1/products/00000000-0000-4000-8000-000000000000')).status).toBe(
      404,
    );
    // Order knows users from their UserRegistered events, and asks the user service about one it
    // has not heard of yet: its inbox held (the projection waits), this order asks.
    const orderDb = new Client({ connectionString: system.databases.order! });
    await orderDb.connect();
    try {
      await orderDb.query('BEGIN; LOCK TABLE inbox IN SHARE MODE');
      const me = await signUp(client, 'metrics');
      const order = { items: [{ productId: KEYBOARD, quantity: 1 }] };
      expect((await client.post('/v1/orders', order, me.token)).status).toBe(201);
    } finally {
      await orderDb.end(); // rolls the lock back
    }
  });

  afterAll(async () => {
    await system?.stop();
  });

  const scrape = async (process: AppProcess) => {
    const response = await fetch(process.metricsUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return response.text();
  };
  const scrapeAll = async (app: 'user' | 'order') =>
    parse((await Promise.all(system.replicas[app]!.map(scrape))).join('\n'));

  it('gives every service replica a metrics port of its own', () => {
    const urls = [...system.replicas.user!, ...system.replicas.order!].map((p) => p.metricsUrl);
    expect(urls).toHaveLength(4);
    expect(new Set(urls).size).toBe(4);
    for (const url of urls) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(system.apps.gateway!.metricsUrl).toBe(`${system.gatewayUrl}/metrics`);
  });

  it('counts every call the order service served, by method and code, across its replicas', async () => {
    const order = await scrapeAll('order');
    const labels = { service: 'order', method: 'GetProduct' };
    expect(total(order, 'grpc_server_calls_total', { ...labels, code: 'OK' })).toBe(PRODUCT_READS);
    expect(total(order, 'grpc_server_calls_total', { ...labels, code: 'NOT_FOUND' })).toBe(1);
    expect(total(order, 'grpc_server_call_duration_seconds_count', { ...labels, code: 'OK' })).toBe(
      PRODUCT_READS,
    );
    const seconds = total(order, 'grpc_server_call_duration_seconds_sum', {
      ...labels,
      code: 'OK',
    });
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(PRODUCT_READS * 3);
    expect(total(order, 'grpc_server_calls_total', { method: 'CreateOrder', code: 'OK' })).toBe(1);
    // The gateway counted the same calls from its side.
    const gateway = parse(await scrape(system.apps.gateway!));
    expect(
      total(gateway, 'grpc_client_calls_total', {
        service: 'order',
        method: 'getProduct',
        code: 'OK',
      }),
    ).toBe(PRODUCT_READS);
    expect(has(gateway, 'http_requests_total')).toBe(true);
  });

  it("counts the order service's calls to the user service, which counted them too", async () => {
    const order = await scrapeAll('order');
    const user = await scrapeAll('user');
    const calls = total(order, 'grpc_client_calls_total', { service: 'user', code: 'OK' });
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(total(order, 'grpc_client_call_duration_seconds_count', { service: 'user' })).toBe(
      total(order, 'grpc_client_calls_total', { service: 'user' }),
    );
    expect(total(user, 'grpc_server_calls_total', { service: 'user', method: 'CreateUser' })).toBe(
      1,
    );
    expect(
      total(user, 'grpc_server_calls_total', { service: 'user', method: 'GetUser', code: 'OK' }),
    ).toBeGreaterThanOrEqual(calls);
  });

  it('reads each database pool when scraped', async () => {
    for (const app of ['user', 'order'] as const) {
      for (const replica of system.replicas[app]!) {
        const samples = parse(await scrape(replica));
        const idle = total(samples, 'db_pool_connections', { state: 'idle' });
        const inUse = total(samples, 'db_pool_connections', { state: 'in_use' });
        expect(samples.filter((s) => s.name === 'db_pool_connections')).toHaveLength(2);
        expect(idle + inUse).toBeGreaterThanOrEqual(1); // it has served (health checks at least)
        expect(idle + inUse).toBeLessThanOrEqual(10); // DATABASE_POOL_SIZE
        expect(total(samples, 'db_pool_waiting_requests')).toBe(0);
        expect(has(samples, 'db_pool_waiting_requests')).toBe(true);
        expect(has(samples, 'process_resident_memory_bytes')).toBe(true);
      }
    }
  });

  it('counts the events: an outbox the broker holds up, a consumer held up, a dead letter', async () => {
    const max = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
      Math.max(
        0,
        ...samples
          .filter((s) => s.name === name)
          .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
          .map((s) => s.value),
      );
    const consumer = { consumer: 'order-users' };
    const [broker, orderDb, userDb] = [
      system.databases.events,
      system.databases.order!,
      system.databases.user!,
    ].map((connectionString) => new Client({ connectionString }));
    await Promise.all([broker!.connect(), orderDb!.connect(), userDb!.connect()]);
    try {
      // The broker cannot store the new user's event (its table locked against writes), and the
      // order service cannot record it in its inbox: each step waits, visibly, until let go.
      await broker!.query('BEGIN; LOCK TABLE events_messages IN SHARE MODE');
      await orderDb!.query('BEGIN; LOCK TABLE inbox IN SHARE MODE');
      await signUp(client, 'metrics-events');
      await until('the user outbox backlog', async () => {
        const user = await scrapeAll('user');
        return (
          max(user, 'outbox_backlog_events') === 1 && max(user, 'outbox_oldest_unsent_seconds') > 0
        );
      });
      await broker!.query('ROLLBACK');
      await until('the event relayed, and unhandled by order-users', async () => {
        const order = await scrapeAll('order');
        const user = await scrapeAll('user');
        return (
          max(order, 'consumer_lag_events', consumer) === 1 &&
          max(user, 'outbox_backlog_events') === 0
        );
      });
      await orderDb!.query('ROLLBACK');
      await until(
        'no lag',
        async () => max(await scrapeAll('order'), 'consumer_lag_events', consumer) === 0,
      );
      expect(total(await scrapeAll('order'), 'dead_letters_total', consumer)).toBe(0);

      // A UserRegistered whose user id is no UUID can never be applied: its handler fails
      // permanently, so it is dead-lettered at its first attempt, and counted once (by the replica
      // that gave up).
      await appendToOutbox(
        userDb!,
        newEnvelope({
          type: EventTypes.UserRegistered,
          aggregateId: 'not-a-uuid',
          source: 'user',
          payload: UserRegistered.encode({
            userId: 'not-a-uuid',
            email: 'x@example.com',
            name: 'X',
          }).finish(),
        }),
      );
      await until(
        'the dead letter counted',
        async () => total(await scrapeAll('order'), 'dead_letters_total', consumer) === 1,
      );
    } finally {
      await Promise.all([broker, orderDb, userDb].map((db) => db!.end()));
    }
  });

  it('exposes what promtool accepts, on every endpoint', async () => {
    const processes = [system.apps.gateway!, ...system.replicas.user!, ...system.replicas.order!];
    for (const process of processes) {
      expect({ [process.label]: await checkMetricsWithPromtool(await scrape(process)) }).toEqual({
        [process.label]: '',
      });
    }
  });

  it('answers 404 beside /metrics on a service metrics port', async () => {
    const url = system.apps.user!.metricsUrl.replace(/\/metrics$/, '/');
    expect((await fetch(url)).status).toBe(404);
  });
});
