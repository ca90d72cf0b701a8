import { isIPv6 } from 'node:net';
import type { RequestHandler } from 'express';
import { PROBLEM_TYPES, problem, sendProblem } from './problem';

/**
 * Per-client rate limiting for the API routes: at most `limit` requests per client in each fixed
 * window of `windowMs`, answered over the limit with a 429 problem and Retry-After, and the IETF
 * draft-7 `RateLimit` / `RateLimit-Policy` headers on every answer.
 *
 * Written here rather than taken from express-rate-limit: that library's async store, per-client
 * timers and option validation cost ~5% of the gateway's CPU per request in `pnpm run profile
 * gateway`, for what is a counter in a Map. The counts live in this process, so each gateway
 * replica limits on its own; behind several replicas, divide the budget or move the counter to a
 * shared store (Redis INCR + EXPIRE has the same shape).
 *
 * The window is one clock for every client (all counts reset together), which keeps memory to one
 * Map entry per client seen in the current window, cleared at its end. Like any fixed window it lets
 * a client spend up to twice the limit across a boundary; a sliding window would cost a second map.
 */
export class FixedWindowLimiter {
  private counts = new Map<string, number>();
  private windowEnd: number;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.windowEnd = now() + windowMs;
  }

  /** Counts one request by `client`: how many are left in this window (-1 once over) and when it ends. */
  hit(client: string): { remaining: number; resetSeconds: number } {
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

/** Express middleware around a FixedWindowLimiter, keyed by `clientKey(req.ip)`. */
export function rateLimiter(limiter: FixedWindowLimiter): RequestHandler {
  const policy = `${limiter.limit};w=${Math.ceil(limiter.windowMs / 1000)}`;
  return (req, res, next) => {
    const { remaining, resetSeconds } = limiter.hit(clientKey(req.ip));
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
}
