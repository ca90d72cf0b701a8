import type { Redis } from 'ioredis';
import { createServer } from 'node:net';
import request from 'supertest';
import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import { GatewayProcess, counterValue } from './gateway-process';
import { MOUSE } from './harness';
import {
  TEST_REDIS_ADDRESS,
  TEST_REDIS_URL,
  connectTestRedis,
  deleteKeys,
  describeWithRedis,
  uniquePrefix,
} from './redis';

// Gateway replicas as real processes (apps/gateway/dist/main.js) in front of the test run's user and
// order services: the rate limit they share through Redis, what happens when Redis fails, and
// several gateways on one port.

const STORE_ERRORS = 'gateway_rate_limit_store_errors_total';
const product = `/v1/products/${MOUSE}`;

describeWithRedis('gateway replicas sharing a rate limit in Redis', () => {
  let redis: Redis;
  let prefix: string;
  const gateways: GatewayProcess[] = [];
  const start = async (env: Record<string, string>) => {
    const gateway = await GatewayProcess.start(await freePort(), {
      RATE_LIMIT_KEY_PREFIX: prefix,
      ...env,
    });
    gateways.push(gateway);
    return gateway;
  };

  beforeAll(async () => {
    redis = await connectTestRedis();
  });
  beforeEach(() => {
    prefix = uniquePrefix('replicas');
  });
  afterEach(async () => {
    const codes = await Promise.all(gateways.splice(0).map((gateway) => gateway.stop()));
    await deleteKeys(redis, prefix);
    expect(codes.every((code) => code === 0)).toBe(true); // each closed Redis and exited cleanly
  });
  afterAll(() => redis?.disconnect());

  it('gives one client RATE_LIMIT_MAX 2xx per window across two gateways, not twice as many', async () => {
    const windowMs = 3_600_000;
    const env = {
      REDIS_URL: TEST_REDIS_URL,
      RATE_LIMIT_MAX: '100',
      RATE_LIMIT_WINDOW_MS: String(windowMs),
      // Generous: on a busy machine a slow answer must not be served uncounted (checked below).
      REDIS_COMMAND_TIMEOUT_MS: '5000',
    };
    const replicas = await Promise.all([start(env), start(env)]);
    for (const gateway of replicas) await gateway.waitFor(/rate-limit store \(Redis\) connected/);

    const window = () => Math.floor(Date.now() / windowMs);
    const before = window();
    // 300 requests from one client (127.0.0.1), alternating between the gateways, 10 at a time.
    const statuses: number[] = [];
    for (let batch = 0; batch < 30; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => request(replicas[i % 2]!.url).get(product)),
      );
      for (const answer of answers) {
        statuses.push(answer.status);
        if (answer.status === 429) expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
      }
    }
    const ok = statuses.filter((status) => status === 200).length;
    expect(ok + statuses.filter((status) => status === 429).length).toBe(300);
    // None was served uncounted because Redis was slow.
    for (const gateway of replicas) {
      expect(await counterValue(gateway.url, STORE_ERRORS)).toBe(0);
    }
    if (window() !== before) {
      expect(ok).toBeLessThanOrEqual(200); // the hour turned mid-test: two windows' budgets
      return;
    }
    expect(ok).toBe(100);
    // One count for the client in this window, which every request added to (the 429s too).
    const key = `${prefix}:127.0.0.1:${before}`;
    expect(await redis.keys(`${prefix}:*`)).toEqual([key]);
    expect(await redis.get(key)).toBe('300');
  });

  it('keeps serving when Redis stops answering or goes down (fail-open), and counts again once it is back', async () => {
    const proxy = new TcpProxy(await freePort(), TEST_REDIS_ADDRESS);
    await proxy.start();
    const timeoutMs = 50;
    const gateway = await start({
      REDIS_URL: `redis://${proxy.address}`,
      RATE_LIMIT_MAX: '1000',
      RATE_LIMIT_WINDOW_MS: '3600000',
      REDIS_COMMAND_TIMEOUT_MS: String(timeoutMs),
    });
    try {
      await gateway.waitFor(/rate-limit store \(Redis\) connected/);
      const counted = await request(gateway.url).get(product).expect(200);
      expect(counted.headers.ratelimit).toMatch(/^limit=1000, remaining=999, reset=\d+$/);

      // Redis hangs: each request waits at most the command timeout, then is served uncounted. (The
      // bound leaves a busy machine room, and is still well under the 1 s after which the client
      // drops a connection that does not answer: the command timeout is what it measures.)
      proxy.hang();
      expect(await servedUncounted(gateway, 20)).toBeLessThan(timeoutMs + 450);
      const afterHang = await counterValue(gateway.url, STORE_ERRORS);
      expect(afterHang).toBeGreaterThanOrEqual(20);

      // Redis down (connections refused): served at once, still uncounted.
      await proxy.stop();
      expect(await servedUncounted(gateway, 20)).toBeLessThan(timeoutMs + 450);
      expect(await counterValue(gateway.url, STORE_ERRORS)).toBeGreaterThanOrEqual(afterHang + 20);
      await request(gateway.url).get('/readyz').expect(200); // readiness does not depend on Redis
      await gateway.waitFor(/rate-limit store \(Redis\) failing/);

      // Redis back: counting resumes without a restart (reconnection attempts are a second apart).
      // Counted answers go on coming down. (Not exactly one a request: on a busy machine a command
      // can still outlast the 50 ms timeout here and there, and that request is served uncounted,
      // as it should be; CI saw one.)
      await proxy.start();
      const resumed = await untilCounted(gateway);
      const next = await untilCounted(gateway);
      expect(remaining(next)).toBeLessThan(remaining(resumed));
      await gateway.waitFor(/rate-limit store \(Redis\) answers again/);
    } finally {
      await proxy.stop();
    }
  });

  it('starts and serves while Redis is unreachable, and counts once it appears', async () => {
    const proxy = new TcpProxy(await freePort(), TEST_REDIS_ADDRESS); // not started yet
    // Until the proxy starts, a listener that resets every connection holds its port: Redis is
    // unreachable all the same, but the port is not left free while the gateway's Redis client
    // keeps connecting to it, where one of those connections can take it (a TCP self-connect,
    // source port = destination port) and the proxy then fails with EADDRINUSE (seen in CI).
    const holder = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(proxy.port, '127.0.0.1', resolve));
    const release = () => new Promise<void>((resolve) => holder.close(() => resolve()));
    const gateway = await start({
      REDIS_URL: `redis://${proxy.address}`,
      RATE_LIMIT_MAX: '1000',
      RATE_LIMIT_WINDOW_MS: '3600000',
    }).catch(async (error: unknown) => {
      await release();
      throw error;
    });
    try {
      await servedUncounted(gateway, 5);
      expect(await counterValue(gateway.url, STORE_ERRORS)).toBeGreaterThanOrEqual(5);
      await release();
      await proxy.start();
      expect(remaining(await untilCounted(gateway))).toBeLessThan(1000);
    } finally {
      if (holder.listening) await release();
      await proxy.stop();
    }
  });
});

/**
 * Sends `count` requests one after another; each must be 200 without RateLimit headers. Resolves
 * to the slowest one's milliseconds.
 */
async function servedUncounted(gateway: GatewayProcess, count: number): Promise<number> {
  let slowest = 0;
  for (let i = 0; i < count; i++) {
    const started = Date.now();
    const answer = await request(gateway.url).get(product).expect(200);
    slowest = Math.max(slowest, Date.now() - started);
    expect(answer.headers.ratelimit).toBeUndefined();
  }
  return slowest;
}

/** Requests until an answer carries RateLimit again (the store is back); fails after 15 s. */
async function untilCounted(gateway: GatewayProcess): Promise<request.Response> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = await request(gateway.url).get(product).expect(200);
    if (answer.headers.ratelimit) return answer;
    if (Date.now() > deadline) throw new Error(`still uncounted after 15 s:\n${gateway.tail()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const remaining = (answer: request.Response) =>
  Number(/remaining=(\d+)/.exec(answer.headers.ratelimit as string)![1]);

describe('GATEWAY_REUSE_PORT', () => {
  const gateways: GatewayProcess[] = [];
  afterEach(async () => {
    await Promise.all(gateways.splice(0).map((gateway) => gateway.stop()));
  });

  it('lets two gateway processes listen on one port, the kernel spreading connections between them', async () => {
    const port = await freePort();
    for (let i = 0; i < 2; i++) {
      gateways.push(await GatewayProcess.start(port, { GATEWAY_REUSE_PORT: 'true' }));
    }
    // 200 requests, each on a new connection (supertest does not keep connections alive).
    for (let i = 0; i < 200; i++)
      await request(`http://127.0.0.1:${port}`).get('/healthz').expect(200);

    // Each process logs the requests it served.
    const served = () =>
      gateways.map(
        (gateway) =>
          gateway
            .records()
            .filter((record) => record.msg === 'request' && record.route === '/healthz').length,
      );
    for (const deadline = Date.now() + 5_000; Date.now() < deadline;) {
      if (served()[0]! + served()[1]! === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const [first, second] = served();
    expect(first! + second!).toBe(200);
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(0);
  });

  it('is off by default: a second gateway on a port in use exits, saying so', async () => {
    const port = await freePort();
    gateways.push(await GatewayProcess.start(port));
    const second = GatewayProcess.spawn(port);
    gateways.push(second);
    expect(await second.exited).toBe(1);
    expect(second.tail()).toContain(`a port this service needs is already in use (${port})`);
  });
});
