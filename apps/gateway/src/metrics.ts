import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  /** Counts and times one HTTP request; `route` is the matched pattern, never the raw path. */
  observeHttp(labels: { method: string; route: string; status: string }, seconds: number): void;
  /** Counts and times one gRPC call to a backend. */
  observeGrpc(labels: { service: string; method: string; code: string }, seconds: number): void;
  /** Counts one request the shared rate-limit store could not count (it was served: fail-open). */
  countRateLimitStoreError(): void;
}

/** prom-client default metrics that are gauges with a counter's `_total` suffix. */
export const DEFAULT_GAUGES_NAMED_TOTAL = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * A counter and a histogram with the same labels, observed together. The children of each label
 * set are looked up once and kept: prom-client otherwise sorts and hashes the labels on every
 * observation, which showed in the gateway's profile. Label values are bounded (route patterns,
 * status codes, method names), so the cache is too.
 */
function countedLatency<L extends string>(
  registry: Registry,
  names: { count: string; duration: string },
  help: string,
  labelNames: readonly L[],
): (labels: Record<L, string>, seconds: number) => void {
  const counter = new Counter({
    name: names.count,
    help: `${help}.`,
    labelNames,
    registers: [registry],
  });
  const histogram = new Histogram({
    name: names.duration,
    help: `${help}: latency in seconds.`,
    labelNames,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const children = new Map<string, [Counter.Internal, Histogram.Internal<L>]>();
  return (labels, seconds) => {
    const key = labelNames.map((label) => labels[label]).join('\u0000');
    let child = children.get(key);
    if (!child) {
      child = [counter.labels(labels), histogram.labels(labels)];
      children.set(key, child);
    }
    child[0].inc();
    child[1].observe(seconds);
  };
}

/**
 * Prometheus metrics in a registry of their own (not the global one), so each app instance — and
 * each test — has its own. Routes are labelled by pattern (`/v1/orders/:id`), never by raw path, so
 * label cardinality stays bounded whatever clients send.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named `_total`, which the exposition format reserves for counters (`promtool check
  // metrics` refuses them). Each is the sum of a gauge that stays, labelled by type
  // (`nodejs_active_handles`, `nodejs_active_requests`, `nodejs_active_resources`).
  for (const name of DEFAULT_GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
  const rateLimitStoreErrors = new Counter({
    name: 'gateway_rate_limit_store_errors_total',
    help:
      'Requests the rate-limit store (Redis) could not count: down, slower than ' +
      'REDIS_COMMAND_TIMEOUT_MS or erroring. Each was served uncounted (fail-open).',
    registers: [registry],
  });
  return {
    registry,
    observeHttp: countedLatency(
      registry,
      { count: 'http_requests_total', duration: 'http_request_duration_seconds' },
      'HTTP requests by method, route pattern and status',
      ['method', 'route', 'status'],
    ),
    observeGrpc: countedLatency(
      registry,
      { count: 'grpc_client_calls_total', duration: 'grpc_client_call_duration_seconds' },
      'gRPC calls to backend services by service, method and status code',
      ['service', 'method', 'code'],
    ),
    countRateLimitStoreError: () => rateLimitStoreErrors.inc(),
  };
}
