import { Client } from 'pg';
import { SPAN_KIND, startReceiver, startTracedSystem, type AppLogLine } from './otlp-receiver';
import { OrderStream } from './sse';
import { KEYBOARD, api, sleep, type TestSystem } from './system';

/**
 * Traces go on through events: a request's trace continues, through the outbox and the broker, into
 * the consumer that handles the event it caused (a CONSUMER span under the producing service's
 * span), and the consumer's log lines carry that trace. Spans received by a real OTLP/HTTP receiver.
 */

/** Polls `check` until it is true, for at most `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('tracing through events', () => {
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

  it("UserRegistered and OrderPlaced are handled in the trace of the request that caused them, and the consumer's logs carry it", async () => {
    const client = api(system!.gatewayUrl!);
    const email = `event-tracing-${Date.now()}@example.com`;
    const password = 'correct horse battery staple';
    const registered = await client.post('/v1/users', { email, name: 'traced', password });
    expect(registered.status).toBe(201);
    const registrationTrace = registered.headers.get('x-trace-id');
    expect(registrationTrace).toMatch(/^[0-9a-f]{32}$/);
    const userId = registered.body.id as string;

    // The order service has applied UserRegistered (its projection holds the user).
    const orderDb = new Client({ connectionString: system!.databases.order! });
    await orderDb.connect();
    try {
      await until('UserRegistered applied by the order service', async () => {
        const { rows } = await orderDb.query(
          'SELECT 1 FROM known_users WHERE user_id = $1 AND registered_at IS NOT NULL',
          [userId],
        );
        return rows.length === 1;
      });
    } finally {
      await orderDb.end();
    }

    // An order placed with a stream open: the gateway's own consumer of OrderPlaced sends it on.
    const login = await client.post('/v1/auth/token', { email, password });
    expect({ status: login.status, body: login.body }).toMatchObject({ status: 200 });
    const token = login.body.accessToken as string;
    const stream = await OrderStream.open(system!.gatewayUrl!, token);
    let orderTrace: string | null;
    try {
      expect(stream.status).toBe(200);
      const placed = await client.post(
        '/v1/orders',
        { items: [{ productId: KEYBOARD, quantity: 1 }] },
        token,
      );
      expect(placed.status).toBe(201);
      orderTrace = placed.headers.get('x-trace-id');
      expect(orderTrace).toMatch(/^[0-9a-f]{32}$/);
      await stream.next('order.placed', (event) => event.data.orderId === placed.body.id);
    } finally {
      stream.close();
    }

    // Stopping the apps exports what they still hold (the shutdown hooks flush the exporter).
    await system!.stop();
    system = undefined;

    /** The one CONSUMER span of `service` processing `type` in `traceId`, under (or linked to) a span of `producer` there. */
    const consumerSpan = (traceId: string, service: string, type: string, producer: string) => {
      const trace = receiver.spans.filter((span) => span.traceId === traceId);
      const found = trace.filter(
        (span) =>
          span.service === service &&
          span.name === `process ${type}` &&
          span.kind === SPAN_KIND.CONSUMER,
      );
      expect({ service, type, found: found.length }).toEqual({ service, type, found: 1 });
      const span = found[0]!;
      const producing = new Set(
        trace.filter((other) => other.service === producer).map((other) => other.spanId),
      );
      const parents = [span.parentSpanId, ...span.links.map((link) => link.spanId)];
      expect({ span: span.name, fromProducer: parents.some((id) => producing.has(id)) }).toEqual({
        span: span.name,
        fromProducer: true,
      });
      expect(span.attributes).toMatchObject({
        'messaging.operation.type': 'process',
        'messaging.message.id': expect.any(String),
      });
      return span;
    };

    const userRegistered = consumerSpan(
      registrationTrace!,
      'order',
      'user.v1.UserRegistered',
      'user',
    );
    consumerSpan(orderTrace!, 'gateway', 'order.v1.OrderPlaced', 'order');

    // The order service's log lines while handling UserRegistered (its event id is their request
    // id) carry the registration's trace, and the consumer span's id.
    const eventId = userRegistered.attributes['messaging.message.id'];
    const lines = logs.filter(
      ({ source, line }) => source === 'order' && line.requestId === eventId,
    );
    expect(lines.map(({ line }) => line.msg)).toContain('event handled');
    for (const { line } of lines) {
      expect({ msg: line.msg, trace_id: line.trace_id }).toEqual({
        msg: line.msg,
        trace_id: registrationTrace,
      });
      expect(line.span_id).toMatch(/^[0-9a-f]{16}$/);
    }
    const handled = lines.find(({ line }) => line.msg === 'event handled')!;
    expect(handled.line.span_id).toBe(userRegistered.spanId);
  });
});
