/**
 * When a client tries an idempotent call again (see grpc-client.ts): how many attempts, how long
 * one attempt may take before it is abandoned for another replica, and how long to wait between.
 */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /**
   * How long an attempt that still has retries left may take. A replica that hangs (paused,
   * swapping, a lost connection not yet noticed) costs a read this much once, not its whole
   * deadline; well above a healthy read's p99 under load (`pnpm bench`: tens of ms), so a healthy
   * but busy replica is rarely abandoned. The last attempt gets whatever the deadline leaves.
   */
  attemptTimeoutMs: number;
  /** Backoff before retry n is a random delay in [0, min(max, initial * 2^(n-1))] ("full jitter"). */
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = {
  maxAttempts: 3,
  attemptTimeoutMs: 300,
  initialBackoffMs: 10,
  maxBackoffMs: 100,
};

/** Full-jitter exponential backoff before retry number `retry` (1 for the first retry). */
export function backoffMs(policy: RetryPolicy, retry: number, random = Math.random): number {
  return random() * Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (retry - 1));
}

/**
 * A retry budget, so retries cannot multiply the load on a backend that is already failing: over
 * the last `windowSeconds`, retries may number at most `ratio` (20%) of the calls made, plus
 * `minPerSecond` per second so that a client with little traffic can still retry. However long an
 * outage lasts, retries add at most that to the calls sent, never two more attempts per call. This
 * is Finagle's RetryBudget. Counting over a window (rather than saving up a fixed number of
 * retries) lets a busy client retry every call that lands on a failing replica in the half second
 * before outlier detection ejects it. One budget per client.
 */
export const RETRY_BUDGET = { ratio: 0.2, minPerSecond: 10, windowSeconds: 10 } as const;

export class RetryBudget {
  /** Calls and retries per second of the window, oldest first; `second` is the newest's. */
  private readonly calls: number[];
  private readonly retries: number[];
  private second: number;

  constructor(
    private readonly ratio: number = RETRY_BUDGET.ratio,
    private readonly minPerSecond: number = RETRY_BUDGET.minPerSecond,
    private readonly windowSeconds: number = RETRY_BUDGET.windowSeconds,
    private readonly now: () => number = Date.now,
  ) {
    this.calls = new Array<number>(windowSeconds).fill(0);
    this.retries = new Array<number>(windowSeconds).fill(0);
    this.second = Math.floor(now() / 1000);
  }

  /** A call starts: it earns `ratio` of a retry. */
  deposit(): void {
    this.advance();
    this.calls[this.windowSeconds - 1]! += 1;
  }

  /** Whether a retry could go out now (spends nothing). */
  canRetry(): boolean {
    this.advance();
    const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
    const allowed = this.ratio * sum(this.calls) + this.minPerSecond * this.windowSeconds;
    return sum(this.retries) + 1 <= allowed;
  }

  /** Spends one retry if the budget has one; false when it is spent. */
  tryRetry(): boolean {
    if (!this.canRetry()) return false;
    this.retries[this.windowSeconds - 1]! += 1;
    return true;
  }

  /** Drops the seconds that have left the window. */
  private advance(): void {
    const second = Math.floor(this.now() / 1000);
    const elapsed = Math.min(second - this.second, this.windowSeconds);
    for (let i = 0; i < elapsed; i++) {
      this.calls.shift();
      this.calls.push(0);
      this.retries.shift();
      this.retries.push(0);
    }
    if (elapsed > 0) this.second = second;
  }
}
