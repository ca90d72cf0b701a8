import { currentContext } from './context';
import { abortReason, deadlineExceeded } from './deadline';
import { DomainError } from './errors';

export interface BoundedQueueOptions {
  /** What the work is, for error messages ("password hashing"). */
  name: string;
  /** Jobs running at once: for CPU-bound work, about the cores it may use. */
  concurrency: number;
  /** Jobs waiting at most; one more is refused at once with RESOURCE_EXHAUSTED. */
  maxQueued: number;
  /**
   * Longest expected wait (ms) before a job starts: a job that would wait longer is refused at once,
   * whatever its deadline. Keeps the answer fast for everyone when the queue is long.
   */
  maxWaitMs: number;
  /** First guess of one job's duration (ms), until a few have been measured. */
  initialEstimateMs: number;
}

interface Waiting {
  start: () => void;
  reject: (error: unknown) => void;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
}

/** RESOURCE_EXHAUSTED: overloaded now, worth retrying later (the gateway answers 503 + Retry-After). */
const overloaded = (name: string, why: string) =>
  new DomainError('RESOURCE_EXHAUSTED', `the service is overloaded (${name}: ${why}); retry later`);

/**
 * Bounded concurrency with a bounded queue, for expensive work that must shed load instead of
 * queueing it (scrypt: tens of ms of CPU each, so a burst of 100 would otherwise keep the service
 * busy for seconds after every caller has given up, and lock out everyone else meanwhile).
 *
 * A job is refused at once (RESOURCE_EXHAUSTED, cheap for the caller to retry) when the queue is
 * full or when the wait ahead of it, estimated from recent job durations, would not leave time to
 * run it before its deadline. A queued job whose caller has gone (deadline passed, cancelled) or
 * whose deadline can no longer be met is dropped before it starts. A job that has started runs to
 * the end: scrypt cannot be interrupted.
 *
 * Written here rather than taken from a library: bulkheads such as cockatiel's bound concurrency
 * and queue length, but none drops queued work by the caller's deadline.
 */
export class BoundedQueue {
  private running = 0;
  private readonly queue: Waiting[] = [];
  /** Exponentially weighted mean of job durations (ms). */
  private estimateMs: number;

  constructor(private readonly options: BoundedQueueOptions) {
    if (options.concurrency < 1) throw new Error('concurrency must be at least 1');
    this.estimateMs = options.initialEstimateMs;
  }

  /** Jobs running and waiting now, and the current estimate of one job's duration. */
  get stats(): { running: number; queued: number; estimateMs: number } {
    return { running: this.running, queued: this.queue.length, estimateMs: this.estimateMs };
  }

  /**
   * Runs `job` when a slot is free, within the current request's deadline (from the async request
   * context). Rejects with RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or CANCELLED without running it.
   */
  async run<T>(job: () => Promise<T>): Promise<T> {
    const context = currentContext();
    const deadline = context?.deadline?.getTime();
    const signal = context?.signal;
    if (deadline !== undefined && deadline <= Date.now()) throw deadlineExceeded(this.options.name);
    if (this.running >= this.options.concurrency) {
      if (this.queue.length >= this.options.maxQueued) {
        throw overloaded(this.options.name, 'queue full');
      }
      // Jobs ahead of this one, spread over the slots, then this one.
      const expectedWaitMs = ((this.queue.length + 1) / this.options.concurrency) * this.estimateMs;
      if (expectedWaitMs > this.options.maxWaitMs) {
        throw overloaded(this.options.name, 'the queue is too long');
      }
      if (deadline !== undefined && Date.now() + expectedWaitMs + this.estimateMs > deadline) {
        throw overloaded(this.options.name, 'it could not finish before the deadline');
      }
      await new Promise<void>((start, reject) => {
        this.queue.push({ start, reject, deadline, signal });
      });
    } else {
      this.running++;
    }
    const started = Date.now();
    try {
      return await job();
    } finally {
      this.estimateMs = 0.8 * this.estimateMs + 0.2 * (Date.now() - started);
      this.running--;
      this.next();
    }
  }

  /** Starts the next job worth starting; drops the ones whose callers are gone or cannot be served. */
  private next(): void {
    while (this.running < this.options.concurrency && this.queue.length > 0) {
      const waiting = this.queue.shift()!;
      const now = Date.now();
      if (waiting.deadline !== undefined && waiting.deadline <= now) {
        waiting.reject(deadlineExceeded(this.options.name));
      } else if (waiting.signal?.aborted) {
        waiting.reject(abortReason(waiting.signal));
      } else if (waiting.deadline !== undefined && now + this.estimateMs > waiting.deadline) {
        waiting.reject(overloaded(this.options.name, 'it could not finish before the deadline'));
      } else {
        this.running++;
        waiting.start();
      }
    }
  }
}
