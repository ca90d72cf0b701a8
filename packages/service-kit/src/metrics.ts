import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** prom-client default metrics that are gauges with a counter's `_total` suffix. */
export const DEFAULT_GAUGES_NAMED_TOTAL = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** Seconds: from a cached read (2 ms) to past the longest deadline (ROUTE_DEADLINE_MS is 3 s). */
export const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * A registry of its own (not prom-client's global one), so each app instance — and each test — has
 * its own, with Node's default process metrics.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named `_total`, which the exposition format reserves for counters (`promtool check
  // metrics` refuses them). Each is the sum of a gauge that stays, labelled by type
  // (`nodejs_active_handles`, `nodejs_active_requests`, `nodejs_active_resources`).
  for (const name of DEFAULT_GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
  return registry;
}

/**
 * A counter and a histogram with the same labels, observed together. The children of each label
 * set are looked up once and kept: prom-client otherwise sorts and hashes the labels on every
 * observation, which showed in the gateway's profile. Label values must be bounded (route
 * patterns, status codes, method names), so the cache is too.
 */
export function countedLatency<L extends string>(
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

const GRPC_LABELS = ['service', 'method', 'code'] as const;

/**
 * `grpc_server_calls_total` and `grpc_server_call_duration_seconds`, fed by unaryService's
 * `onCallEnd`. `service` is the short name the callers' `grpc_client_*` metrics use (`user`), so
 * both sides of a call carry the same label.
 */
export function grpcServerMetrics(
  registry: Registry,
  service: string,
): (event: { method: string; code: string; durationMs: number }) => void {
  const observe = countedLatency(
    registry,
    { count: 'grpc_server_calls_total', duration: 'grpc_server_call_duration_seconds' },
    'gRPC calls served, by service, method and status code',
    GRPC_LABELS,
  );
  return ({ method, code, durationMs }) => observe({ service, method, code }, durationMs / 1000);
}

/** The metrics of calls to other services, labelled by the service called (`user`, `order`). */
export interface GrpcClientMetrics {
  /** The hooks of a ServiceClient for `service` (createServiceClient's onCallEnd and onRetry). */
  hooks(service: string): {
    onCallEnd(event: { method: string; code: string; durationMs: number }): void;
    onRetry(event: { method: string; code: string }): void;
  };
}

/** `grpc_client_calls_total`, `grpc_client_call_duration_seconds` and `grpc_client_retries_total`. */
export function grpcClientMetrics(registry: Registry): GrpcClientMetrics {
  const observe = countedLatency(
    registry,
    { count: 'grpc_client_calls_total', duration: 'grpc_client_call_duration_seconds' },
    'gRPC calls to other services by service, method and status code (after retries)',
    GRPC_LABELS,
  );
  const retries = new Counter({
    name: 'grpc_client_retries_total',
    help: 'gRPC calls to other services tried again, by service, method and the code of the attempt that failed.',
    labelNames: GRPC_LABELS,
    registers: [registry],
  });
  return {
    hooks: (service) => ({
      onCallEnd: ({ method, code, durationMs }) =>
        observe({ service, method, code }, durationMs / 1000),
      onRetry: ({ method, code }) => retries.labels({ service, method, code }).inc(),
    }),
  };
}

export interface PoolStats {
  /** Connections checked out by a query or transaction. */
  inUse: number;
  idle: number;
  /** Queries or transactions waiting for a connection (all are in use). */
  waiting: number;
}

/**
 * `db_pool_connections{state}` and `db_pool_waiting_requests`, read from the pool when scraped:
 * nothing runs between scrapes.
 */
export function dbPoolMetrics(registry: Registry, stats: () => PoolStats): void {
  new Gauge({
    name: 'db_pool_connections',
    help: 'Database connections in the pool, by state (in_use: checked out; idle).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const { inUse, idle } = stats();
      this.set({ state: 'in_use' }, inUse);
      this.set({ state: 'idle' }, idle);
    },
  });
  new Gauge({
    name: 'db_pool_waiting_requests',
    help: 'Queries and transactions waiting for a pooled database connection.',
    registers: [registry],
    collect() {
      this.set(stats().waiting);
    },
  });
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (the Prometheus text format) on a port of its own, for services whose API
 * is gRPC; anything else is 404. Resolves once listening, with the bound port (pass 0 for an
 * ephemeral one).
 */
export async function startMetricsServer(
  registry: Registry,
  { host, port }: { host: string; port: number },
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = req.url?.split('?', 1)[0];
    if (path !== '/metrics' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) =>
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // A scrape in progress must not hold a stopping service open (idle ones close anyway).
        server.closeAllConnections();
      }),
  };
}
