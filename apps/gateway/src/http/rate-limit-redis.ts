import { Redis } from 'ioredis';
import type { Logger } from '@repo/service-kit/logger';
import type { RateLimitStore } from './rate-limit';

/** INCR and, for a new key, PEXPIRE in one atomic step and one round trip. */
const INCREMENT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count`;

/** A connection with commands waiting and no byte back for this long is dead: reconnect. */
const SOCKET_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 1_000;
/** Reconnection attempts back off to one a second: a Redis that returns is used within a second. */
const RECONNECT_MAX_DELAY_MS = 1_000;
/** At most one warning per this interval while the store fails, however many requests fail. */
const WARNING_INTERVAL_MS = 10_000;

type IncrementingRedis = Redis & {
  incrementWindow(key: string, ttlMs: number): Promise<number>;
};

export interface RedisRateLimitStoreOptions {
  /** `redis://host:port[/db]`. */
  url: string;
  /** Every key is `<keyPrefix>:<key>`. */
  keyPrefix: string;
  /** Longest wait for one command, after which the request is served uncounted. */
  timeoutMs: number;
  logger: Logger;
  /** Called once per request the store could not count (the metrics counter). */
  onError: () => void;
}

/**
 * Rate-limit counts in Redis, shared by every gateway replica. Fail-open by design: whatever goes
 * wrong, `increment` answers `undefined` within `timeoutMs` and the request is served uncounted
 * (see SharedWindowLimiter for why). So:
 * - a Redis that is down at start-up does not stop the gateway from starting (it waits at most a
 *   second for the first connection): the client keeps retrying in the background, at most a
 *   second apart, and recovers by itself;
 * - while disconnected, commands fail at once instead of queueing (no offline queue): a Redis
 *   that is known to be down adds no latency at all;
 * - a Redis that hangs costs each request at most `timeoutMs`, and after a second without an
 *   answer the connection is dropped and re-made;
 * - a command lost with its connection is never re-sent (it may have counted already).
 * Each failure is counted (`onError`) and logged as a warning at most every 10 s; each connection
 * made, and the first success after failures, are logged at info.
 */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly redis: IncrementingRedis;
  private readonly logger: Logger;
  private readonly onError: () => void;
  private failing = false;
  private failuresSinceWarning = 0;
  private lastWarningAt = 0;

  constructor(options: RedisRateLimitStoreOptions) {
    this.logger = options.logger;
    this.onError = options.onError;
    this.redis = new Redis(options.url, {
      keyPrefix: `${options.keyPrefix}:`,
      // Every increment issued in one tick leaves in one write.
      enableAutoPipelining: true,
      commandTimeout: options.timeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      socketTimeout: SOCKET_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 100, RECONNECT_MAX_DELAY_MS),
      // On close, a socket that has not ended after this long is destroyed. (ioredis also arms this
      // timer for a socket already gone, which would hold a stopping process for the 2 s default.)
      disconnectTimeout: 100,
      // EVALSHA, falling back to EVAL on a new connection or after Redis lost its scripts.
      scripts: { incrementWindow: { lua: INCREMENT_SCRIPT, numberOfKeys: 1 } },
    }) as IncrementingRedis;
    // Connection errors (refused, reset, timed out) arrive here, not through a command.
    this.redis.on('error', (error: Error) => this.failed(error));
    this.redis.on('ready', () =>
      this.logger.info({ store: this.address() }, 'rate-limit store (Redis) connected'),
    );
  }

  /**
   * Resolves once the first connection is ready (true), or has failed or taken `timeoutMs` (false),
   * never later: start-up waits for this, so that the first requests are counted, and a Redis that
   * is down delays it by at most `timeoutMs`.
   */
  connected(timeoutMs = CONNECT_TIMEOUT_MS): Promise<boolean> {
    if (this.redis.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const settle = (ready: boolean) => {
        clearTimeout(timer);
        this.redis.off('ready', onReady).off('error', onError);
        resolve(ready);
      };
      const onReady = () => settle(true);
      const onError = () => settle(false);
      const timer = setTimeout(onError, timeoutMs);
      this.redis.once('ready', onReady).once('error', onError);
    });
  }

  async increment(key: string, ttlMs: number): Promise<number | undefined> {
    try {
      const count = await this.redis.incrementWindow(key, ttlMs);
      if (this.failing) this.recovered();
      return count;
    } catch (error) {
      this.onError();
      this.failed(error as Error);
      return undefined;
    }
  }

  /** Closes the connection (on shutdown, once no request is left). */
  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  private failed(error: Error): void {
    this.failing = true;
    this.failuresSinceWarning++;
    const now = Date.now();
    if (now - this.lastWarningAt < WARNING_INTERVAL_MS) return;
    this.logger.warn(
      { err: error.message, failures: this.failuresSinceWarning, store: this.address() },
      'rate-limit store (Redis) failing: requests are served uncounted (fail-open) until it answers',
    );
    this.failuresSinceWarning = 0;
    this.lastWarningAt = now;
  }

  private recovered(): void {
    this.failing = false;
    this.lastWarningAt = 0;
    this.failuresSinceWarning = 0;
    this.logger.info({ store: this.address() }, 'rate-limit store (Redis) answers again: counting');
  }

  /** host:port, never the URL (it may hold a password). */
  private address(): string {
    const { host, port } = this.redis.options;
    return `${host}:${port}`;
  }
}
