import { Client } from 'pg';
import {
  SPAN_KIND,
  startReceiver,
  startTracedSystem,
  type AppLogLine,
  type ReceivedSpan,
} from './otlp-receiver';
import { KEYBOARD, api, signUp, sleep, type TestSystem } from './system';

/**
 * The order service asks the user service only about users it has not heard of (it keeps its own
 * projection of users from UserRegistered): once the user's registration is applied there, this
 * forgets the user again (the event is in its inbox: it is not applied twice), so the order's trace
 * goes through the user service, deterministically.
 */
async function forgetInOrderService(orderDatabase: string, userId: string): Promise<void> {
  const db = new Client({ connectionString: orderDatabase });
  await db.connect();
  try {
    const deadline = Date.now() + 30_000;
    while (
      (await db.query('DELETE FROM known_users WHERE user_id = $1', [userId])).rowCount === 0
    ) {
      if (Date.now() > deadline) throw new Error('UserRegistered never reached the order service');
      await sleep(100);
    }
  } finally {
    await db.end();
  }
}

describe('tracing: one trace per request, from the gateway to PostgreSQL, exported with OTLP', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let system: TestSystem | undefined;
  const logs: AppLogLine[] = [];

  beforeAll(async () => {
    receiver = await startReceiver();
    system = await startTracedSystem(receiver, logs);
  });

  afterAll(async () => {
    await system?.stop();
    await new Promise((resolve) => receiver?.server.close(resolve));
  });

  it('places an order: gateway, order, user and database spans in one trace, and its id in every log line', async () => {
    const client = api(system!.gatewayUrl!);
    const me = await signUp(client, 'tracing');
    await forgetInOrderService(system!.databases.order!, me.id);
    const requestId = `tracing-${Date.now()}`;
    const placed = await client.post(
      '/v1/orders',
      { items: [{ productId: KEYBOARD, quantity: 1 }] },
      me.token,
      { 'X-Request-Id': requestId, 'Idempotency-Key': requestId },
    );
    expect(placed.status).toBe(201);
    expect(placed.headers.get('x-request-id')).toBe(requestId);
    const traceId = placed.headers.get('x-trace-id');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);

    // Stopping the apps exports what they still hold (the shutdown hooks flush the exporter).
    await system!.stop();
    system = undefined;

    const trace = receiver.spans.filter((span) => span.traceId === traceId);
    const find = (service: string, name: string, kind: number) => {
      const found = trace.filter(
        (span) => span.service === service && span.name === name && span.kind === kind,
      );
      expect({ service, name, kind, found: found.length }).toEqual({
        service,
        name,
        kind,
        found: 1,
      });
      return found[0]!;
    };
    const childrenOf = (parent: ReceivedSpan) =>
      trace.filter((span) => span.parentSpanId === parent.spanId);

    // The gateway's request span is the root, named after the route pattern, with the request id.
    const root = find('gateway', 'POST /v1/orders', SPAN_KIND.SERVER);
    expect(root.parentSpanId ?? '').toBe('');
    expect(root.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/orders',
      'http.response.status_code': 201,
      'request.id': requestId,
    });
    // gateway -> order: the client span, and the order service's server span under it.
    const createCall = find('gateway', 'order.v1.OrderService/CreateOrder', SPAN_KIND.CLIENT);
    expect(createCall.parentSpanId).toBe(root.spanId);
    const createServed = find('order', 'order.v1.OrderService/CreateOrder', SPAN_KIND.SERVER);
    expect(createServed.parentSpanId).toBe(createCall.spanId);
    expect(createServed.attributes).toMatchObject({ 'rpc.grpc.status_code': 0 });
    // order -> user: GetUser, and the user service's query under its server span.
    const getUserCall = find('order', 'user.v1.UserService/GetUser', SPAN_KIND.CLIENT);
    expect(getUserCall.parentSpanId).toBe(createServed.spanId);
    const getUserServed = find('user', 'user.v1.UserService/GetUser', SPAN_KIND.SERVER);
    expect(getUserServed.parentSpanId).toBe(getUserCall.spanId);
    const userQuery = find('user', 'SELECT users', SPAN_KIND.CLIENT);
    expect(userQuery.parentSpanId).toBe(getUserServed.spanId);
    expect(userQuery.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.collection.name': 'users',
    });
    // The order's transaction, its statements under it.
    const transaction = find('order', 'transaction', SPAN_KIND.CLIENT);
    expect(transaction.parentSpanId).toBe(createServed.spanId);
    const statements = childrenOf(transaction);
    expect(statements.map((span) => span.name)).toEqual(
      expect.arrayContaining(['INSERT orders', 'INSERT order_items', 'UPDATE products']),
    );
    for (const statement of statements) {
      expect(statement.service).toBe('order');
      expect(statement.attributes['db.system.name']).toBe('postgresql');
    }
    // One tree: every span but the root has its parent in the trace.
    const ids = new Set(trace.map((span) => span.spanId));
    expect(trace.filter((span) => span !== root && !ids.has(span.parentSpanId))).toEqual([]);

    // Every log line the request caused, in all three processes, carries its trace id.
    const lines = logs.filter(({ line }) => line.requestId === requestId);
    expect(new Set(lines.map(({ source }) => source))).toEqual(
      new Set(['gateway', 'order', 'user']),
    );
    for (const { source, line } of lines) {
      expect({ source, msg: line.msg, trace_id: line.trace_id }).toEqual({
        source,
        msg: line.msg,
        trace_id: traceId,
      });
      expect(line.span_id).toMatch(/^[0-9a-f]{16}$/);
    }
  });
});
