import { Registry, collectDefaultMetrics } from 'prom-client';
import { UserServiceClient, type UserServiceService } from '@repo/contracts/user/v1';
import { DomainError } from '../src/errors';
import { createServiceClient } from '../src/grpc-client';
import type { GrpcServer } from '../src/grpc-server';
import {
  createRegistry,
  dbPoolMetrics,
  grpcClientMetrics,
  grpcServerMetrics,
  startMetricsServer,
  type MetricsServer,
} from '../src/metrics';
import { checkMetricsWithPromtool, rejectionOf } from '../src/testing';
import { fakeUserServer } from './fake-user-service';

const user = { id: 'u1', email: 'a@example.com', name: 'A' };

describe('service metrics over real TCP', () => {
  const registry = createRegistry();
  const pool = { inUse: 3, idle: 7, waiting: 2 };
  let grpcServer: GrpcServer;
  let metricsServer: MetricsServer;
  let client: ReturnType<typeof createServiceClient<UserServiceClient, typeof UserServiceService>>;
  let failNext = 0;

  beforeAll(async () => {
    const client_ = grpcClientMetrics(registry);
    dbPoolMetrics(registry, () => pool);
    grpcServer = fakeUserServer(
      {
        getUser: async (request) => {
          if (failNext > 0) {
            failNext--;
            throw new DomainError('UNAVAILABLE', 'the database is unavailable');
          }
          if (request.id === 'missing') throw new DomainError('NOT_FOUND', 'no such user');
          return { user };
        },
      },
      { onCallEnd: grpcServerMetrics(registry, 'user') },
    );
    grpcServer.setServing(true);
    const port = await grpcServer.listen(0, '127.0.0.1');
    // Attempt timeouts far above what a busy machine takes: each call reaches the server once unless
    // a test fails it on purpose (a first call's connection set-up outlasted the default 300 ms in
    // CI, its retry made the server count one call more than the client).
    client = createServiceClient(UserServiceClient, `127.0.0.1:${port}`, {
      ...client_.hooks('user'),
      deadlineMs: 30_000,
      retry: { attemptTimeoutMs: 10_000 },
    });
    metricsServer = await startMetricsServer(registry, { host: '127.0.0.1', port: 0 });
  });

  afterAll(async () => {
    client.close();
    await grpcServer.shutdown(500);
    await metricsServer.close();
  });

  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${metricsServer.port}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return response.text();
  };

  it('counts and times every served call by method and code', async () => {
    await client.getUser({ id: 'u1' });
    await client.getUser({ id: 'u1' });
    await rejectionOf(client.getUser({ id: 'missing' }));
    const text = await scrape();
    expect(text).toContain(
      'grpc_server_calls_total{service="user",method="GetUser",code="OK"} 2\n',
    );
    expect(text).toContain(
      'grpc_server_calls_total{service="user",method="GetUser",code="NOT_FOUND"} 1\n',
    );
    expect(text).toContain(
      'grpc_server_call_duration_seconds_count{service="user",method="GetUser",code="OK"} 2\n',
    );
    expect(text).toMatch(
      /grpc_server_call_duration_seconds_bucket\{le="\+Inf",service="user",method="GetUser",code="OK"\} 2\n/,
    );
  });

  it("counts the client's calls after retries, and each retry with the code that caused it", async () => {
    failNext = 1;
    await client.getUser({ id: 'u1' });
    const text = await scrape();
    expect(text).toContain(
      'grpc_client_retries_total{service="user",method="getUser",code="UNAVAILABLE"} 1\n',
    );
    // The call that needed a retry counts once, as OK; the server saw both attempts.
    expect(text).toContain(
      'grpc_client_calls_total{service="user",method="getUser",code="OK"} 3\n',
    );
    expect(text).toContain(
      'grpc_server_calls_total{service="user",method="GetUser",code="UNAVAILABLE"} 1\n',
    );
  });

  it('reads the database pool when scraped', async () => {
    pool.inUse = 4;
    pool.waiting = 5;
    const text = await scrape();
    expect(text).toContain('db_pool_connections{state="in_use"} 4\n');
    expect(text).toContain('db_pool_connections{state="idle"} 7\n');
    expect(text).toContain('db_pool_waiting_requests 5\n');
  });

  it('exposes what promtool accepts, Node default metrics included', async () => {
    const text = await scrape();
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    expect(await checkMetricsWithPromtool(text)).toBe('');
  });

  it('answers anything but GET /metrics with 404', async () => {
    const base = `http://127.0.0.1:${metricsServer.port}`;
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics/x`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
  });
});

describe('startMetricsServer', () => {
  it('frees its port on close', async () => {
    const server = await startMetricsServer(createRegistry(), { host: '127.0.0.1', port: 0 });
    expect(server.port).toBeGreaterThan(0);
    await fetch(`http://127.0.0.1:${server.port}/metrics`, { keepalive: true });
    await server.close();
    await expect(fetch(`http://127.0.0.1:${server.port}/metrics`)).rejects.toThrow();
  });

  it('rejects when its port is taken', async () => {
    const first = await startMetricsServer(createRegistry(), { host: '127.0.0.1', port: 0 });
    await expect(
      startMetricsServer(createRegistry(), { host: '127.0.0.1', port: first.port }),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await first.close();
  });
});

describe('checkMetricsWithPromtool', () => {
  it('reports what promtool refuses: a gauge named like a counter', async () => {
    const text = '# HELP x_total A gauge.\n# TYPE x_total gauge\nx_total 1\n';
    expect(await checkMetricsWithPromtool(text)).toMatch(/x_total/);
  });

  it("refuses prom-client's default metrics as they are (why createRegistry drops some)", async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    expect(await checkMetricsWithPromtool(await registry.metrics())).toMatch(
      /nodejs_active_handles_total/,
    );
  });
});
