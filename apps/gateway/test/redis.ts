import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

/**
 * The Redis the rate-limit tests use: the one every CI machine runs at 127.0.0.1:6379, or
 * TEST_REDIS_URL. Without one these tests fail, saying so; SKIP_REDIS_TESTS=1 skips them instead
 * (a laptop without Redis), never silently.
 */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

const url = new URL(TEST_REDIS_URL);
export const TEST_REDIS_ADDRESS = { host: url.hostname, port: Number(url.port || 6379) };

export const describeWithRedis = process.env.SKIP_REDIS_TESTS === '1' ? describe.skip : describe;

/** A plain client to the test Redis (to look at keys and clean up); fails clearly if none runs. */
export async function connectTestRedis(): Promise<Redis> {
  const redis = new Redis(TEST_REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined); // the failure is reported below, once
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    throw new Error(
      `these tests need Redis at ${TEST_REDIS_URL} (CI machines run one at 127.0.0.1:6379): start ` +
        'one (Debian: apt-get install redis-server), point TEST_REDIS_URL at another, or set ' +
        `SKIP_REDIS_TESTS=1 to skip them (${(error as Error).message})`,
      { cause: error },
    );
  }
  return redis;
}

/** A key prefix no other test (or run) uses. */
export const uniquePrefix = (name: string) => `gateway-test:${name}:${randomUUID().slice(0, 8)}`;

/** Every key under `prefix`, deleted. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
}
