import { isIPv6 } from 'node:net';
import type { NextFunction, RequestHandler, Response } from 'express';
import { PROBLEM_TYPES, problem, sendProblem } from './problem';

/** One request counted: how many are left in this window (-1 once over) and when it ends. */
export interface RateLimitCount {
  remaining: number;
  resetSeconds: number;
}

/**
 * Counts requests per client in fixed windows. A limiter in this process answers at once; a shared
 * store answers later, and with `undefined` when it could not count (the request is then served:
 * see SharedWindowLimiter).
 */
export interface Limiter {
  readonly limit: number;
  readonly windowMs: number;
  hit(client: string): RateLimitCount | Promise<RateLimitCount | undefined>;
}

/**
 * Per-client rate limiting for the API routes: at most `limit` requests per client in each fixed
 * window of `windowMs`, answered over the limit with a 429 problem and Retry-After, and the IETF
 * draft-7 `RateLimit` / `RateLimit-Policy` headers on every answer.
 *
 * Written here rather than taken from express-rate-limit: that library's async store, per-client
 * timers and option validation cost ~5% of the gateway's CPU per request in `pnpm run profile
 * gateway`, for what is a counter in a Map. These counts live in this process, so each gateway
 * replica limits on its own: with more than one, use a `SharedWindowLimiter` (REDIS_URL).
 *
 * The window is one clock for every client (all counts reset together), which keeps memory to one
 * Map entry per client seen in the current window, cleared at its end. Like any fixed window it lets
 * a client spend up to twice the limit across a boundary; a sliding window would cost a second map.
 */
export class FixedWindowLimiter implements Limiter {
  private counts = new Map<string, number>();
  private windowEnd: number;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.windowEnd = now() + windowMs;
  }

  hit(client: string): RateLimitCount {
    const now = this.now();
    if (now >= this.windowEnd) {
      this.counts.clear();
      // Windows stay aligned to the first one, however long the gateway sat idle.
      this.windowEnd += Math.ceil((now - this.windowEnd + 1) / this.windowMs) * this.windowMs;
    }
    const count = (this.counts.get(client) ?? 0) + 1;
    this.counts.set(client, count);
    return {
      remaining: count > this.limit ? -1 : this.limit - count,
      resetSeconds: Math.max(1, Math.ceil((this.windowEnd - now) / 1000)),
    };
  }
}

const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * The key a client is limited by: its IPv4 address, or the /56 prefix of its IPv6 address (one
 * customer site gets a /56 or a /64 and can pick any address inside it; limiting each address would
 * limit nothing). IPv4-mapped IPv6 addresses count as the IPv4 address.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const bare = address.split('%')[0]!; // drop a zone id (fe80::1%eth0)
  const [head = '', tail] = bare.split('::');
  const groupsOf = (part: string) =>
    part === ''
      ? []
      : part.split(':').flatMap((group) => (group.includes('.') ? ['0', '0'] : [group]));
  const first = groupsOf(head);
  const last = tail === undefined ? [] : groupsOf(tail);
  const groups = [...first, ...Array<string>(8 - first.length - last.length).fill('0'), ...last];
  const hex = groups.slice(0, 4).map((group) => group.padStart(4, '0').toLowerCase());
  return `${hex.slice(0, 3).join(':')}:${hex[3]!.slice(0, 2)}00::/56`;
}

/** A counter every gateway replica shares (`RedisRateLimitStore`). */
export interface RateLimitStore {
  /**
   * Adds one to `key`, which expires `ttlMs` from now if it is new: the count, or `undefined` when
   * the store failed or was too slow (it never rejects).
   */
  increment(key: string, ttlMs: number): Promise<number | undefined>;
}

/**
 * How long a shared count outlives its window: a replica whose clock is behind the others' still
 * finds the count of the window it is in. Replicas' clocks (NTP) agree far better than this.
 */
export const CLOCK_SKEW_ALLOWANCE_MS = 5_000;

/**
 * The same fixed windows as FixedWindowLimiter, counted in a store every gateway replica shares, so
 * that a client gets `limit` requests per window however many replicas serve it, not N times as
 * many. One round trip per request (the store increments and sets the expiry atomically). Windows
 * are aligned to the wall clock (`floor(now / windowMs)`), so every replica agrees on which window a
 * request falls in without talking to the others; the key is `<client>:<window index>`.
 *
 * When the store cannot count a request (down, slow, erroring), the request is served as if under
 * the limit (fail-open), without `RateLimit` headers since its budget is unknown: the limit protects
 * the API from abuse, it is not part of any answer's correctness, and an outage of the counter must
 * not become an outage of the API. The store bounds the wait and reports each failure.
 */
export class SharedWindowLimiter implements Limiter {
  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly store: RateLimitStore,
    private readonly now: () => number = Date.now,
  ) {}

  async hit(client: string): Promise<RateLimitCount | undefined> {
    const now = this.now();
    const window = Math.floor(now / this.windowMs);
    const windowEnd = (window + 1) * this.windowMs;
    const count = await this.store.increment(
      `${client}:${window}`,
      windowEnd - now + CLOCK_SKEW_ALLOWANCE_MS,
    );
    if (count === undefined) return undefined;
    return {
      remaining: count > this.limit ? -1 : this.limit - count,
      resetSeconds: Math.max(1, Math.ceil((windowEnd - now) / 1000)),
    };
  }
}

/**
 * Express middleware around a Limiter, keyed by `clientKey(req.ip)`. A limiter in this process
 * answers synchronously and the request goes on in the same tick; only a shared store's answer is
 * awaited.
 */
export function rateLimiter(limiter: Limiter): RequestHandler {
  const policy = `${limiter.limit};w=${Math.ceil(limiter.windowMs / 1000)}`;
  const answer = (count: RateLimitCount | undefined, res: Response, next: NextFunction): void => {
    if (count === undefined) {
      next(); // the store could not count it: served (fail-open), see SharedWindowLimiter
      return;
    }
    const { remaining, resetSeconds } = count;
    res.setHeader('RateLimit-Policy', policy);
    res.setHeader(
      'RateLimit',
      `limit=${limiter.limit}, remaining=${Math.max(remaining, 0)}, reset=${resetSeconds}`,
    );
    if (remaining >= 0) {
      next();
      return;
    }
    sendProblem(
      res,
      problem(
        429,
        PROBLEM_TYPES.rateLimited,
        `too many requests from this client; retry in ${resetSeconds} s`,
      ),
      { 'Retry-After': String(resetSeconds) },
    );
  };
  return (req, res, next) => {
    const count = limiter.hit(clientKey(req.ip));
    if (count instanceof Promise) count.then((counted) => answer(counted, res, next), next);
    else answer(count, res, next);
  };
}
