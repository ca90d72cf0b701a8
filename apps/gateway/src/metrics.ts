import { Counter, Gauge, type Registry } from 'prom-client';
import {
  countedLatency,
  createRegistry,
  grpcClientMetrics,
  type GrpcClientMetrics,
} from '@repo/service-kit/metrics';

export interface Metrics {
  registry: Registry;
  /** Counts and times one HTTP request; `route` is the matched pattern, never the raw path. */
  observeHttp(labels: { method: string; route: string; status: string }, seconds: number): void;
  /** Calls to the backends: counts, latencies and retries. */
  grpcClient: GrpcClientMetrics;
  /** Counts one request the shared rate-limit store could not count (it was served: fail-open). */
  countRateLimitStoreError(): void;
  /** Reports `open()`, the order event streams this process holds, at each scrape. */
  observeOrderStreams(open: () => number): void;
}

/**
 * Prometheus metrics in a registry of their own (see @repo/service-kit/metrics). Routes are
 * labelled by pattern (`/v1/orders/:id`), never by raw path, so label cardinality stays bounded
 * whatever clients send.
 */
export function createMetrics(): Metrics {
  const registry = createRegistry();
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
    grpcClient: grpcClientMetrics(registry),
    countRateLimitStoreError: () => rateLimitStoreErrors.inc(),
    observeOrderStreams: (open) => {
      new Gauge({
        name: 'gateway_order_event_streams',
        help: 'Open GET /v1/orders/events streams (Server-Sent Events) held by this process.',
        registers: [registry],
        collect() {
          this.set(open());
        },
      });
    },
  };
}
