import { randomUUID } from 'node:crypto';
import { get, type ClientRequest, type IncomingMessage } from 'node:http';
import request from 'supertest';
import { OrderStatus } from '@repo/contracts/order/v1';
import { CancellationReason, OrderCancelled, OrderPlaced } from '@repo/contracts/order/v1/events';
import { dropDatabase, withDatabase } from '@repo/database/admin';
import { newEnvelope, type Envelope } from '@repo/events/envelope';
import { createNatsTransport } from '@repo/events/nats';
import { createPostgresTransport } from '@repo/events/postgres';
import { EventTypes } from '@repo/events/subjects';
import type { Transport } from '@repo/events/transport';
import { freePort } from '@repo/service-kit/ports';
import { createLogger } from '@repo/service-kit/logger';
import { TcpProxy } from '@repo/service-kit/testing';
import { OrderStreams } from '../src/events/order-streams';
import { GatewayProcess, counterValue } from './gateway-process';
import { MOUSE, buildGateway, expectProblem, forgeToken } from './harness';

// GET /v1/orders/events: real gateway processes (apps/gateway/dist/main.js) subscribed to a real
// events broker (the PostgreSQL transport on the test run's server, in a broker database of this
// file's own; and NATS JetStream for the core case), the test publishing OrderPlaced/OrderCancelled
// envelopes with the transport as the order service does.

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const CONNECTED = /order event stream connected to the events broker/;
const STREAMS = 'gateway_order_event_streams';

/** The test run's PostgreSQL server (the order service's database URL names it). */
function serverUrl(): string {
  const env = JSON.parse(process.env.TEST_ORDER_ENV ?? '{}') as { DATABASE_URL?: string };
  if (!env.DATABASE_URL) throw new Error('TEST_ORDER_ENV has no DATABASE_URL: run through Jest');
  return env.DATABASE_URL;
}

/** An access token the gateways accept (the default issuer and audience of a gateway process). */
const tokenFor = (userId: string) =>
  forgeToken({ sub: userId, iss: 'microservices-reference', aud: 'microservices-reference-api' });

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/** A Server-Sent Events client over node:http that keeps what it receives, parsed. */
class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  ended = false;
  private buffer = '';

  private constructor(
    private readonly req: ClientRequest,
    readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.take(chunk));
    res.on('close', () => {
      this.ended = true;
    });
  }

  static open(url: string, token: string): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = get(
        `${url}/v1/orders/events`,
        { headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' } },
        (res) => resolve(new SseClient(req, res)),
      );
      req.on('error', reject);
    });
  }

  private take(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const event: SseEvent = {};
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('retry: ')) this.retry = Number(line.slice(7));
        else if (line.startsWith('id: ')) event.id = line.slice(4);
        else if (line.startsWith('event: ')) event.event = line.slice(7);
        else if (line.startsWith('data: ')) event.data = line.slice(6);
      }
      if (event.event) this.events.push(event);
    }
  }

  /** The parsed data of every event received. */
  data(): Record<string, unknown>[] {
    return this.events.map((event) => JSON.parse(event.data ?? 'null') as Record<string, unknown>);
  }

  /** The whole body, for a non-200 answer. */
  async text(): Promise<string> {
    await waitFor('the answer to end', () => this.ended);
    return this.buffer;
  }

  close(): void {
    this.req.destroy();
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function placed(userId: string, orderId = randomUUID()): Envelope {
  return newEnvelope({
    type: EventTypes.OrderPlaced,
    aggregateId: orderId,
    source: 'order',
    payload: OrderPlaced.encode({
      orderId,
      userId,
      items: [
        {
          productId: MOUSE,
          sku: 'MOUSE-1',
          name: 'Mouse',
          quantity: 2,
          unitPriceCents: 1250,
        },
      ],
      totalCents: 2500,
      currency: 'EUR',
      status: OrderStatus.ORDER_STATUS_CONFIRMED,
    }).finish(),
  });
}

function cancelled(userId: string, orderId: string): Envelope {
  return newEnvelope({
    type: EventTypes.OrderCancelled,
    aggregateId: orderId,
    source: 'order',
    payload: OrderCancelled.encode({
      orderId,
      userId,
      reason: CancellationReason.CANCELLATION_REASON_USER_REQUESTED,
      previousStatus: OrderStatus.ORDER_STATUS_CONFIRMED,
    }).finish(),
  });
}

describe('GET /v1/orders/events (in process)', () => {
  const gateway = buildGateway();
  afterAll(() => gateway.close());

  it('answers 401 without a token', async () => {
    const response = await request(gateway.app).get('/v1/orders/events');
    expectProblem(response, 401);
    expect(response.headers['www-authenticate']).toBe('Bearer');
  });

  it('answers 503 naming the cause when the gateway has no events broker', async () => {
    const response = await request(gateway.app)
      .get('/v1/orders/events')
      .set('Authorization', `Bearer ${(await gateway.tokens.issue(randomUUID())).accessToken}`);
    expectProblem(response, 503);
    expect(response.body.detail).toMatch(/not connected to the events broker/);
    expect(response.headers['retry-after']).toBeDefined();
  });

  it('is documented as text/event-stream', async () => {
    const doc = (await request(gateway.app).get('/openapi.json').expect(200)).body;
    const operation = doc.paths['/v1/orders/events'].get;
    expect(Object.keys(operation.responses['200'].content)).toEqual(['text/event-stream']);
    expect(operation.security).toEqual([{ bearerAuth: [] }]);
  });
});

describe('OrderStreams shutting down while it subscribes', () => {
  const deferred = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((done) => (resolve = done));
    return { promise, resolve };
  };
  /** A transport whose subscribe waits for `release`, and whose close fails (a broker gone). */
  function stalledTransport() {
    const release = deferred();
    const closed = deferred();
    let subscribing = false;
    const transport: Transport = {
      name: 'stub',
      prefix: 'events',
      publish: () => Promise.reject(new Error('unused')),
      subscribe: async () => {
        subscribing = true;
        await release.promise;
        return { stop: () => Promise.reject(new Error('the broker is gone')) };
      },
      pending: () => Promise.resolve(0),
      deadLetters: () => Promise.resolve([]),
      replayDeadLetter: () => Promise.reject(new Error('unused')),
      close: () => {
        closed.resolve();
        return Promise.reject(new Error('the broker is gone'));
      },
    };
    return { transport, release, closed, subscribing: () => subscribing };
  }
  const drainMicrotasks = () => new Promise((resolve) => setImmediate(resolve));

  it('leaves quietly, without a rejection, a retry or a warning, when closing the broker fails', async () => {
    const lines: string[] = [];
    const logger = createLogger({
      name: 'test',
      level: 'info',
      pretty: false,
      destination: { write: (line: string) => void lines.push(line) },
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const stub = stalledTransport();
      const streams = new OrderStreams({ logger, heartbeatMs: 60_000, maxStreams: 1 });
      streams.start(() => Promise.resolve(stub.transport));
      while (!stub.subscribing()) await drainMicrotasks();
      await streams.close();
      stub.release.resolve();
      await stub.closed.promise;
      await drainMicrotasks();
      await drainMicrotasks();
      expect(lines.filter((line) => /"level":(40|50)/.test(line))).toEqual([]);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('GET /v1/orders/events with the PostgreSQL transport', () => {
  const database = `gateway_events_${randomUUID().slice(0, 8)}`;
  const brokerUrl = withDatabase(serverUrl(), database);
  let publisher: Transport;
  const gateways: GatewayProcess[] = [];
  const clients: SseClient[] = [];

  const start = async (env: Record<string, string> = {}) => {
    const gateway = await GatewayProcess.start(await freePort(), {
      EVENTS_TRANSPORT: 'postgres',
      EVENTS_DATABASE_URL: brokerUrl,
      SSE_HEARTBEAT_MS: '300',
      ...env,
    });
    gateways.push(gateway);
    return gateway;
  };
  const open = async (gateway: GatewayProcess, userId: string) => {
    const client = await SseClient.open(gateway.url, await tokenFor(userId));
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    publisher = await createPostgresTransport({ url: brokerUrl });
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    const codes = await Promise.all(gateways.splice(0).map((gateway) => gateway.stop()));
    expect(codes.every((code) => code === 0)).toBe(true);
  });
  afterAll(async () => {
    await publisher?.close();
    await dropDatabase(serverUrl(), database);
  });

  it("streams the owner's order events, and nobody else's, with heartbeats", async () => {
    const gateway = await start();
    await gateway.waitFor(CONNECTED);
    const owner = randomUUID();
    const other = randomUUID();
    const ownerStream = await open(gateway, owner);
    const otherStream = await open(gateway, other);
    expect(ownerStream.res.statusCode).toBe(200);
    expect(ownerStream.res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(ownerStream.res.headers['x-accel-buffering']).toBe('no');
    expect(ownerStream.res.headers['content-encoding']).toBeUndefined();
    await waitFor('the retry hint', () => ownerStream.retry !== undefined);

    const order = placed(owner);
    const orderId = order.aggregateId;
    await publisher.publish(order);
    await waitFor('the owner to receive order.placed', () => ownerStream.events.length === 1);
    expect(ownerStream.events[0]).toMatchObject({ id: order.id, event: 'order.placed' });
    expect(ownerStream.data()[0]).toEqual({
      orderId,
      status: 'CONFIRMED',
      totalCents: 2500,
      currency: 'EUR',
      items: [
        { productId: MOUSE, sku: 'MOUSE-1', name: 'Mouse', quantity: 2, unitPriceCents: 1250 },
      ],
      occurredAt: order.occurredAt!.toISOString(),
    });

    const cancel = cancelled(owner, orderId);
    await publisher.publish(cancel);
    // The other user's own event, published after both: once it arrived, theirs would have too.
    const sentinel = placed(other);
    await publisher.publish(sentinel);
    await waitFor('the owner to receive order.cancelled', () => ownerStream.events.length === 2);
    expect(ownerStream.events[1]).toMatchObject({ id: cancel.id, event: 'order.cancelled' });
    expect(ownerStream.data()[1]).toEqual({
      orderId,
      status: 'CANCELLED',
      reason: 'USER_REQUESTED',
      previousStatus: 'CONFIRMED',
      occurredAt: cancel.occurredAt!.toISOString(),
    });
    await waitFor('the other user to receive their own event', () => otherStream.events.length > 0);
    expect(otherStream.events.map((event) => event.id)).toEqual([sentinel.id]);

    await waitFor(
      'heartbeats',
      () => ownerStream.comments.filter((c) => c === 'heartbeat').length >= 3,
    );
    expect(await counterValue(gateway.url, STREAMS)).toBe(2);
    otherStream.close();
    await waitFor(
      'the closed stream to leave the count',
      async () => (await counterValue(gateway.url, STREAMS)) === 1,
    );
  });

  it('delivers to the clients of every gateway replica', async () => {
    const [first, second] = await Promise.all([start(), start()]);
    await Promise.all([first.waitFor(CONNECTED), second.waitFor(CONNECTED)]);
    const user = randomUUID();
    const streams = [await open(first, user), await open(second, user), await open(second, user)];
    const order = placed(user);
    await publisher.publish(order);
    await waitFor('every stream to receive the event', () =>
      streams.every((stream) => stream.events.length === 1),
    );
    for (const stream of streams) expect(stream.events[0]!.id).toBe(order.id);
  });

  it('refuses a stream past SSE_MAX_STREAMS with 503, and takes one again once a stream closed', async () => {
    const gateway = await start({ SSE_MAX_STREAMS: '2' });
    await gateway.waitFor(CONNECTED);
    const user = randomUUID();
    const kept = await open(gateway, user);
    const closing = await open(gateway, user);
    expect([kept.res.statusCode, closing.res.statusCode]).toEqual([200, 200]);
    const refused = await open(gateway, user);
    expect(refused.res.statusCode).toBe(503);
    expect(refused.res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.res.headers['retry-after']).toBeDefined();
    expect(JSON.parse(await refused.text())).toMatchObject({
      status: 503,
      detail: expect.stringMatching(/maximum of 2 event streams/),
    });
    closing.close();
    await waitFor('a stream accepted again', async () => {
      const again = await open(gateway, user);
      return again.res.statusCode === 200;
    });
  });

  it('ends open streams on shutdown, without waiting for them', async () => {
    const gateway = await start({ SHUTDOWN_GRACE_MS: '60000' });
    await gateway.waitFor(CONNECTED);
    const stream = await open(gateway, randomUUID());
    await waitFor('the stream to open', () => stream.retry !== undefined);
    const began = Date.now();
    expect(await gateway.stop()).toBe(0);
    // Well under the grace period (60 s) that would otherwise force the stream closed.
    expect(Date.now() - began).toBeLessThan(20_000);
    await waitFor('the stream to end', () => stream.ended);
    gateways.splice(gateways.indexOf(gateway), 1);
  });

  it('answers 503 while the broker cannot be reached, serves the rest of the API, and connects once it can', async () => {
    const target = new URL(serverUrl());
    const proxy = new TcpProxy(await freePort(), {
      host: target.hostname,
      port: Number(target.port || 5432),
    });
    const viaProxy = new URL(brokerUrl);
    viaProxy.host = proxy.address;
    // The proxy is not listening yet: the broker is unreachable.
    const gateway = await start({ EVENTS_DATABASE_URL: viaProxy.toString() });
    try {
      await gateway.waitFor(/cannot reach the events broker/);
      const refused = await open(gateway, randomUUID());
      expect(refused.res.statusCode).toBe(503);
      expect(JSON.parse(await refused.text()).detail).toMatch(
        /the events broker cannot be reached/,
      );
      expect((await fetch(`${gateway.url}/v1/products/${MOUSE}`)).status).toBe(200);
      expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);

      await proxy.start();
      await gateway.waitFor(CONNECTED, 60_000);
      const user = randomUUID();
      const stream = await open(gateway, user);
      expect(stream.res.statusCode).toBe(200);
      const order = placed(user);
      await publisher.publish(order);
      await waitFor('the event', () => stream.events.length === 1);
    } finally {
      for (const client of clients.splice(0)) client.close();
      await gateway.stop();
      gateways.splice(gateways.indexOf(gateway), 1);
      await proxy.stop();
    }
  }, 90_000);

  it('answers 503 naming EVENTS_DATABASE_URL when the postgres transport has none, the rest unaffected', async () => {
    const gateway = await start({ EVENTS_DATABASE_URL: '' });
    const refused = await open(gateway, randomUUID());
    expect(refused.res.statusCode).toBe(503);
    expect(JSON.parse(await refused.text()).detail).toMatch(/EVENTS_DATABASE_URL is not set/);
    expect((await fetch(`${gateway.url}/v1/products/${MOUSE}`)).status).toBe(200);
  });
});

describe(`GET /v1/orders/events with NATS JetStream (${NATS_URL})`, () => {
  it("streams the owner's order events", async () => {
    // A namespace of its own, as the order service of that system would publish in: subjects
    // `events_<it>.*` on the stream `EVENTS_<it>` (see eventsEnv), deleted afterwards.
    const namespace = `gateway_test_${randomUUID().slice(0, 8)}`;
    const stream = `EVENTS_${namespace}`;
    const publisher = await createNatsTransport({
      servers: NATS_URL,
      name: 'gateway-test',
      stream,
      prefix: `events_${namespace}`,
    });
    let gateway: GatewayProcess | undefined;
    let client: SseClient | undefined;
    try {
      gateway = await GatewayProcess.start(await freePort(), {
        EVENTS_TRANSPORT: 'nats',
        NATS_URL,
        EVENTS_NAMESPACE: namespace,
      });
      await gateway.waitFor(CONNECTED);
      const user = randomUUID();
      client = await SseClient.open(gateway.url, await tokenFor(user));
      expect(client.res.statusCode).toBe(200);
      const order = placed(user);
      await publisher.publish(order);
      await publisher.publish(cancelled(user, order.aggregateId));
      await waitFor('both events', () => client!.events.length === 2);
      expect(client.events.map((event) => event.event)).toEqual([
        'order.placed',
        'order.cancelled',
      ]);
      expect(client.data()[0]).toMatchObject({ orderId: order.aggregateId, totalCents: 2500 });
    } finally {
      client?.close();
      if (gateway) expect(await gateway.stop()).toBe(0);
      for (const name of [stream, `${stream}_DEAD`])
        await publisher.jsm.streams.delete(name).catch(() => undefined);
      await publisher.close();
    }
  });
});
