import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  grpcCalls: Counter<'service' | 'method' | 'code'>;
  grpcDuration: Histogram<'service' | 'method' | 'code'>;
}

const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Prometheus metrics in a registry of their own (not the global one), so each app instance — and
 * each test — has its own. Routes are labelled by pattern (`/v1/orders/:id`), never by raw path, so
 * label cardinality stays bounded whatever clients send.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    grpcCalls: new Counter({
      name: 'grpc_client_calls_total',
      help: 'gRPC calls to backend services by service, method and status code.',
      labelNames: ['service', 'method', 'code'],
      registers: [registry],
    }),
    grpcDuration: new Histogram({
      name: 'grpc_client_call_duration_seconds',
      help: 'gRPC call latency to backend services by service, method and status code.',
      labelNames: ['service', 'method', 'code'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
  };
}
