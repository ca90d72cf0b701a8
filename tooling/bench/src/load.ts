import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

/** What one load run measured: enough to merge several runs of the same scenario exactly. */
export interface LoadSample {
  seconds: number;
  /** Completed requests (any status). */
  requests: number;
  /** Completed requests answered 2xx: the throughput. */
  ok: number;
  /** Network errors and timeouts. */
  errors: number;
  non2xx: number;
  /** 503 answers (also counted in non2xx): load shed by design, e.g. when hashing is saturated. */
  shed: number;
  /** Every completed request's latency. */
  latenciesMs: number[];
}

export interface LoadResult {
  /** 2xx answers per second loaded: a request shed with 503 is not throughput. */
  requestsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  /** Network errors and timeouts. */
  errors: number;
  non2xx: number;
  shed: number;
  total: number;
}

/**
 * Merges the rounds of one scenario: req/s over the time actually loaded, percentiles over every
 * request of every round (not an average of per-round percentiles).
 */
export function summarize(samples: readonly LoadSample[]): LoadResult {
  const seconds = samples.reduce((sum, s) => sum + s.seconds, 0);
  const requests = samples.reduce((sum, s) => sum + s.requests, 0);
  const ok = samples.reduce((sum, s) => sum + s.ok, 0);
  const latencies = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  return {
    requestsPerSecond: seconds > 0 ? Math.round(ok / seconds) : 0,
    p50: Math.round(percentile(latencies, 50)),
    p90: Math.round(percentile(latencies, 90)),
    p99: Math.round(percentile(latencies, 99)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    non2xx: samples.reduce((sum, s) => sum + s.non2xx, 0),
    shed: samples.reduce((sum, s) => sum + s.shed, 0),
    total: requests + samples.reduce((sum, s) => sum + s.errors, 0),
  };
}

export interface HttpRequestSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Runs autocannon against 127.0.0.1 for a fixed time; every request is built by `next()`. */
export async function httpLoad(options: {
  url: string;
  connections: number;
  durationSec: number;
  next: () => HttpRequestSpec;
}): Promise<LoadSample> {
  const latenciesMs: number[] = [];
  let ok = 0;
  let shed = 0;
  const started = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSec,
        timeout: 10,
        requests: [
          {
            setupRequest: (request) => {
              const spec = options.next();
              return {
                ...request,
                method: spec.method,
                path: spec.path,
                headers: { ...request.headers, ...spec.headers },
                body: spec.body,
              };
            },
          },
        ],
      },
      (error: Error | null, done: autocannon.Result) => (error ? reject(error) : resolve(done)),
    );
    // autocannon emits (client, statusCode, bytes, ms); @types/autocannon leaves out the client.
    (instance as unknown as NodeJS.EventEmitter).on(
      'response',
      (_client: unknown, status: number, _bytes: number, ms: number) => {
        latenciesMs.push(ms);
        if (status >= 200 && status < 300) ok++;
        else if (status === 503) shed++;
      },
    );
  });
  return {
    seconds: (performance.now() - started) / 1000,
    requests: latenciesMs.length,
    ok,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    shed,
    latenciesMs,
  };
}

/** The value at percentile `p` of sorted values (0 when there are none). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A closed-loop load of `concurrency` callers, each awaiting `call()` back to back. */
export async function callLoad(options: {
  concurrency: number;
  durationSec: number;
  call: () => Promise<unknown>;
}): Promise<LoadSample> {
  const latenciesMs: number[] = [];
  let errors = 0;
  const until = performance.now() + options.durationSec * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          await options.call();
          latenciesMs.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  return {
    seconds: (performance.now() - started) / 1000,
    requests: latenciesMs.length,
    ok: latenciesMs.length,
    errors,
    non2xx: 0,
    shed: 0,
    latenciesMs,
  };
}
