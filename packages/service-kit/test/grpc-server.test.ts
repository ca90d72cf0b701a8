import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Metadata, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { UserServiceClient, type UserServiceService } from '@repo/contracts/user/v1';
import { createServiceClient, failedService } from '../src/grpc-client';
import { eventually, rejectionOf } from '../src/testing';
import type { CallEndEvent, GrpcServer } from '../src/grpc-server';
import { fakeUserServer } from './fake-user-service';
import { DomainError, fieldViolationsOf } from '../src/errors';
import { DEADLINE_KEY, runWithContext } from '../src/context';
import { checkHealth } from '../src/health-client';
import { freePort } from '../src/ports';

const seenRequestIds: string[] = [];
const callEnds: CallEndEvent[] = [];

function buildServer(): GrpcServer {
  return fakeUserServer(
    {
      getUser: async (request, context) => {
        seenRequestIds.push(context.requestId);
        if (request.id === 'missing') throw new DomainError('NOT_FOUND', 'user missing not found');
        if (request.id === 'boom') throw new Error('SELECT * FROM secret_table failed');
        return { user: { id: request.id, email: 'a@example.com', name: 'A' } };
      },
      createUser: async () => {
        throw DomainError.invalid([
          { field: 'email', description: 'must be an email address', reason: 'INVALID_FORMAT' },
          { field: 'password', description: 'must be at least 12 characters', reason: 'TOO_SHORT' },
        ]);
      },
    },
    { onCallEnd: (event) => callEnds.push(event) },
  );
}

describe('gRPC server bootstrap over real TCP', () => {
  let server: GrpcServer;
  let address: string;
  let client: ReturnType<typeof createServiceClient<UserServiceClient, typeof UserServiceService>>;

  beforeAll(async () => {
    server = buildServer();
    const port = await server.listen(0, '127.0.0.1');
    expect(port).toBeGreaterThan(0);
    address = `127.0.0.1:${port}`;
    client = createServiceClient(UserServiceClient, address);
  });

  afterAll(async () => {
    client.close();
    await server.shutdown(1000);
  });

  it('reports NOT_SERVING until told otherwise, then SERVING, per service and overall', async () => {
    expect(await checkHealth(address)).toBe('NOT_SERVING');
    server.setServing(true);
    expect(await checkHealth(address)).toBe('SERVING');
    expect(await checkHealth(address, 'user.v1.UserService')).toBe('SERVING');
    server.setServing(false);
    expect(await checkHealth(address, 'user.v1.UserService')).toBe('NOT_SERVING');
    server.setServing(true);
  });

  it('answers health for an unknown service with NOT_FOUND', async () => {
    await expect(checkHealth(address, 'nope.v1.Nope')).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });

  it('lists its services through reflection, as buf curl sees them', async () => {
    const { stdout } = await promisify(execFile)(require.resolve('@bufbuild/buf/bin/buf'), [
      'curl',
      '--protocol',
      'grpc',
      '--http2-prior-knowledge',
      '--list-services',
      `http://${address}`,
    ]);
    const services = stdout.trim().split('\n').sort();
    expect(services).toEqual(['grpc.health.v1.Health', 'user.v1.UserService']);
  });

  it('serves a unary call and passes the request id through', async () => {
    const response = await client.getUser({ id: 'u1' }, { requestId: 'req-123' });
    expect(response.user?.id).toBe('u1');
    expect(seenRequestIds).toContain('req-123');
  });

  it('maps a DomainError to its gRPC status and message, naming the service that failed', async () => {
    const error = await rejectionOf(client.getUser({ id: 'missing' }));
    expect(error).toMatchObject({ code: status.NOT_FOUND, details: 'user missing not found' });
    expect(failedService(error)).toBe('user.v1.UserService');
    expect(failedService(new Error('not from a client'))).toBeUndefined();
  });

  it('carries one field violation per bad field on INVALID_ARGUMENT', async () => {
    const error = await client
      .createUser({ email: 'x', name: 'n', password: 'p', idempotencyKey: '' })
      .catch((e: ServiceError) => e);
    expect((error as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    expect(fieldViolationsOf(error as ServiceError)).toEqual([
      { field: 'email', description: 'must be an email address', reason: 'INVALID_FORMAT' },
      { field: 'password', description: 'must be at least 12 characters', reason: 'TOO_SHORT' },
    ]);
  });

  it('turns an unexpected error into INTERNAL without leaking it', async () => {
    const error = (await client.getUser({ id: 'boom' }).catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(status.INTERNAL);
    expect(error.details).toBe('internal error');
    expect(error.message).not.toContain('secret_table');
  });

  it('tells onCallEnd about every finished call once, with its method and status code', async () => {
    callEnds.length = 0;
    await client.getUser({ id: 'u3' });
    await rejectionOf(client.getUser({ id: 'missing' }));
    await rejectionOf(client.getUser({ id: 'boom' }));
    expect(callEnds.map(({ service, method, code }) => ({ service, method, code }))).toEqual([
      { service: 'user.v1.UserService', method: 'GetUser', code: 'OK' },
      { service: 'user.v1.UserService', method: 'GetUser', code: 'NOT_FOUND' },
      { service: 'user.v1.UserService', method: 'GetUser', code: 'INTERNAL' },
    ]);
    for (const { durationMs } of callEnds) expect(durationMs).toBeGreaterThanOrEqual(0);
  });

  it('generates a request id when the caller sends none or a malformed one', async () => {
    seenRequestIds.length = 0;
    await client.getUser({ id: 'u2' }, { requestId: 'bad id with spaces' });
    expect(seenRequestIds[0]).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('gRPC client helper', () => {
  it('fails within its deadline with UNAVAILABLE or DEADLINE_EXCEEDED when no server listens', async () => {
    const client = createServiceClient(UserServiceClient, `127.0.0.1:${await freePort()}`, {
      deadlineMs: 500,
    });
    const started = Date.now();
    const error = (await client.getUser({ id: 'x' }).catch((e: unknown) => e)) as ServiceError;
    const elapsed = Date.now() - started;
    client.close();
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(error.code);
    expect(elapsed).toBeLessThan(1500);
  });

  it('never outlives the deadline of the request being served', async () => {
    const server = buildServer();
    const port = await server.listen(0, '127.0.0.1');
    const client = createServiceClient(UserServiceClient, `127.0.0.1:${port}`, {
      deadlineMs: 10_000,
    });
    const error = await runWithContext({ requestId: 'r', deadline: new Date(Date.now() - 1) }, () =>
      client.getUser({ id: 'u' }).catch((e: ServiceError) => e),
    );
    client.close();
    await server.shutdown(500);
    expect((error as ServiceError).code).toBe(status.DEADLINE_EXCEEDED);
  });
});

describe('deadlines bind the work on the server', () => {
  let server: GrpcServer;
  let port: number;
  const started: string[] = [];
  const aborted: string[] = [];

  beforeAll(async () => {
    server = fakeUserServer({
      getUser: async (request, context) => {
        started.push(request.id);
        if (request.id.startsWith('wait')) {
          // Work that lasts until the caller is gone.
          await new Promise((resolve) =>
            context.signal.addEventListener('abort', resolve, { once: true }),
          );
          aborted.push(request.id);
        }
        return { user: { id: request.id, email: 'a@example.com', name: 'A' } };
      },
    });
    port = await server.listen(0, '127.0.0.1');
    server.setServing(true);
  });

  afterAll(() => server.shutdown(500));

  it('does not start a call whose absolute deadline passed in transit, even with time left on grpc-timeout', async () => {
    // What a call looks like when it sat in a socket buffer while the server was paused: gRPC's
    // relative timeout restarts on arrival, the caller's absolute deadline does not.
    const raw = new UserServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set(DEADLINE_KEY, String(Date.now() - 1_000));
    const error = await new Promise<ServiceError | null>((resolve) => {
      raw.getUser({ id: 'stale' }, metadata, { deadline: Date.now() + 10_000 }, (e) => resolve(e));
    });
    raw.close();
    expect(error?.code).toBe(status.DEADLINE_EXCEEDED);
    expect(started).not.toContain('stale');
  });

  it('tells the handler when the deadline passes, through the context signal', async () => {
    const client = createServiceClient(UserServiceClient, `127.0.0.1:${port}`, {
      deadlineMs: 200,
    });
    const error = await rejectionOf<ServiceError>(client.getUser({ id: 'wait-deadline' }));
    client.close();
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    await eventually(async () => aborted.includes('wait-deadline'), true);
  });

  it('cancels outgoing calls when the request being served is cancelled', async () => {
    const client = createServiceClient(UserServiceClient, `127.0.0.1:${port}`, {
      deadlineMs: 10_000,
    });
    const controller = new AbortController();
    const call = runWithContext({ requestId: 'r', signal: controller.signal }, () =>
      client.getUser({ id: 'wait-cancel' }),
    );
    await eventually(async () => started.includes('wait-cancel'), true);
    controller.abort();
    const error = await rejectionOf<ServiceError>(call);
    client.close();
    expect(error.code).toBe(status.CANCELLED);
    await eventually(async () => aborted.includes('wait-cancel'), true);
  });
});
