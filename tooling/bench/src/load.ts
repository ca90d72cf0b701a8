import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

export interface LoadResult {
  requestsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  /** Network errors and timeouts. */
  errors: number;
  non2xx: number;
  total: number;
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
}): Promise<LoadResult> {
  const result = await autocannon({
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
  });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    total: result.requests.total,
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A closed-loop load of `concurrency` callers, each awaiting `call()` back to back. */
export async function callLoad(options: {
  concurrency: number;
  durationSec: number;
  call: () => Promise<unknown>;
}): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const until = performance.now() + options.durationSec * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          await options.call();
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: Math.round(latencies.length / seconds),
    p50: Math.round(percentile(latencies, 50)),
    p90: Math.round(percentile(latencies, 90)),
    p99: Math.round(percentile(latencies, 99)),
    errors,
    non2xx: 0,
    total: latencies.length + errors,
  };
}
