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
 * A retry budget, so retries cannot multiply the load on a backend that is already failing: every
 * call earns `ratio` of a retry, every retry spends one, and at most `capacity` retries are saved
 * up. However long an outage lasts, retries add at most `ratio` (20%) to the calls sent, after one
 * burst of `capacity` (the idea of Finagle's RetryBudget and gRPC's retryThrottling). The burst is
 * what carries callers through the second or so before outlier detection ejects a replica that
 * hangs: until then every call that lands on it needs a retry. One budget per client.
 */
export const RETRY_BUDGET = { ratio: 0.2, capacity: 100 } as const;

export class RetryBudget {
  private tokens: number;

  constructor(
    private readonly ratio: number = RETRY_BUDGET.ratio,
    private readonly capacity: number = RETRY_BUDGET.capacity,
  ) {
    this.tokens = capacity;
  }

  /** A call starts: it earns a fraction of a retry. */
  deposit(): void {
    this.tokens = Math.min(this.capacity, this.tokens + this.ratio);
  }

  /** Whether a retry could go out now (spends nothing). */
  canRetry(): boolean {
    return this.tokens >= 1;
  }

  /** Spends one retry if there is one; false when the budget is empty. */
  tryRetry(): boolean {
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
