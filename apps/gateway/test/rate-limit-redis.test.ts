import type { Redis } from 'ioredis';
import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import { CLOCK_SKEW_ALLOWANCE_MS, SharedWindowLimiter } from '../src/http/rate-limit';
import { RedisRateLimitStore } from '../src/http/rate-limit-redis';
import { logger } from './harness';
import {
  TEST_REDIS_ADDRESS,
  TEST_REDIS_URL,
  connectTestRedis,
  deleteKeys,
  describeWithRedis,
  uniquePrefix,
} from './redis';

describeWithRedis('SharedWindowLimiter on Redis', () => {
  let redis: Redis;
  let prefix: string;
  const stores: RedisRateLimitStore[] = [];
  let errors = 0;
  const store = async (url = TEST_REDIS_URL, timeoutMs = 2_000) => {
    const created = new RedisRateLimitStore({
      url,
      keyPrefix: prefix,
      timeoutMs,
      logger,
      onError: () => errors++,
    });
    stores.push(created);
    await created.connected();
    return created;
  };

  beforeAll(async () => {
    redis = await connectTestRedis();
  });
  beforeEach(() => {
    prefix = uniquePrefix('limiter');
    errors = 0;
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((each) => each.close()));
    await deleteKeys(redis, prefix);
  });
  afterAll(() => redis?.disconnect());

  it('counts each client per wall-clock window in `<prefix>:<client>:<window>`, expiring after it', async () => {
    const windowMs = 60_000;
    let now = 1_000 * windowMs + 45_000; // window 1000, 15 s before its end
    const limiter = new SharedWindowLimiter(3, windowMs, await store(), () => now);
    const hits = [];
    for (let i = 0; i < 4; i++) hits.push(await limiter.hit('203.0.113.7'));
    expect(hits).toEqual([
      { remaining: 2, resetSeconds: 15 },
      { remaining: 1, resetSeconds: 15 },
      { remaining: 0, resetSeconds: 15 },
      { remaining: -1, resetSeconds: 15 },
    ]);
    expect(await limiter.hit('203.0.113.8')).toEqual({ remaining: 2, resetSeconds: 15 });

    const key = `${prefix}:203.0.113.7:1000`;
    expect(await redis.get(key)).toBe('4');
    const ttl = await redis.pttl(key);
    expect(ttl).toBeLessThanOrEqual(15_000 + CLOCK_SKEW_ALLOWANCE_MS);
    expect(ttl).toBeGreaterThan(15_000 + CLOCK_SKEW_ALLOWANCE_MS - 5_000);

    now += 15_000; // the next window: a fresh count
    expect(await limiter.hit('203.0.113.7')).toEqual({ remaining: 2, resetSeconds: 60 });
    expect(await redis.exists(`${prefix}:203.0.113.7:1001`)).toBe(1);
    expect(errors).toBe(0);
  });

  it('gives a client one budget across replicas: two limiters on two connections share it', async () => {
    const replicas = (await Promise.all([store(), store()])).map(
      (each) => new SharedWindowLimiter(10, 3_600_000, each),
    );
    const window = () => Math.floor(Date.now() / 3_600_000);
    const before = window();
    // 40 requests at once, alternating between the replicas.
    const counts = await Promise.all(
      Array.from({ length: 40 }, (_, i) => replicas[i % 2]!.hit('198.51.100.1')),
    );
    const allowed = counts.filter((count) => count!.remaining >= 0).length;
    // Every count is one distinct step of the same counter.
    if (window() === before) {
      expect(allowed).toBe(10);
      expect(counts.map((count) => count!.remaining).sort((a, b) => a - b)).toEqual([
        ...Array<number>(30).fill(-1),
        ...Array.from({ length: 10 }, (_, i) => i),
      ]);
    } else {
      expect(allowed).toBeLessThanOrEqual(20); // an hour boundary split the requests
    }
    expect(errors).toBe(0);
  });

  it('fails open at once when nothing listens: no count, no rejection, each failure reported', async () => {
    const timeoutMs = 2_000;
    const limiter = new SharedWindowLimiter(
      1,
      60_000,
      await store(`redis://127.0.0.1:${await freePort()}`, timeoutMs),
    );
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect(await limiter.hit('192.0.2.1')).toBeUndefined();
    // No connection, no waiting: neither for the command timeout nor, in an offline queue, for the
    // next reconnection attempt (100 ms or more each time).
    expect(Date.now() - started).toBeLessThan(300);
    expect(errors).toBe(5);
  });

  it('bounds the wait on a Redis that stops answering, and counts again once it answers', async () => {
    const proxy = new TcpProxy(await freePort(), TEST_REDIS_ADDRESS);
    await proxy.start();
    try {
      const limiter = new SharedWindowLimiter(
        100,
        3_600_000,
        await store(`redis://${proxy.address}`, 50),
      );
      await expect(limiter.hit('192.0.2.2')).resolves.toMatchObject({ remaining: 99 });

      proxy.hang();
      for (let i = 0; i < 5; i++) {
        const started = Date.now();
        expect(await limiter.hit('192.0.2.2')).toBeUndefined();
        expect(Date.now() - started).toBeLessThan(50 + 450); // the command timeout, with room
      }
      expect(errors).toBe(5);

      await proxy.stop();
      await proxy.start();
      let count;
      for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
        count = await limiter.hit('192.0.2.2');
        if (count) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // The count goes on from where Redis has it (the hung commands may or may not have counted).
      expect(count?.remaining).toBeLessThan(99);
    } finally {
      await proxy.stop();
    }
  });
});
