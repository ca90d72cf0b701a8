import { OrderStream, serverPidOf } from './sse';
import { MOUSE, api, signUp, startTestSystem, type Api, type TestSystem } from './system';

/**
 * GET /v1/orders/events through the real system, with two gateway processes sharing one port: the
 * order service's OrderPlaced/OrderCancelled travel outbox -> broker -> every gateway, and reach the
 * streams of the order's owner whichever process holds them. Both transports.
 */

/** Streams opened before one landed on each process: the kernel spreads connections at random. */
const MAX_ATTEMPTS = 64;
/**
 * Deadlines for a busy machine: what is tested here is where events go, not how fast a login's
 * password hashing answers (at the default 2 s, a loaded machine turns it into 504s).
 */
const GENEROUS_DEADLINES = { ROUTE_DEADLINE_MS: '30000', BACKEND_DEADLINE_MS: '25000' };

describe.each(['postgres', 'nats'] as const)('order event streams (%s transport)', (transport) => {
  let system: TestSystem;
  let client: Api;
  const open: OrderStream[] = [];

  beforeAll(async () => {
    system = await startTestSystem(GENEROUS_DEADLINES, {
      eventsTransport: transport,
      replicas: { gateway: 2 },
    });
    client = api(system.gatewayUrl!);
  });

  afterEach(() => {
    // Nothing outlives its test, whatever it failed on.
    for (const stream of open.splice(0)) stream.close();
  });

  afterAll(async () => {
    await system?.stop();
  });

  /** One open stream of `token`'s user on each gateway process (the others it took are closed). */
  async function onEveryGateway(token: string): Promise<OrderStream[]> {
    const gateways = system.replicas.gateway!;
    expect(gateways).toHaveLength(2);
    const pids = gateways.map((gateway) => gateway.pid!);
    const byPid = new Map<number, OrderStream>();
    for (let attempt = 0; byPid.size < pids.length; attempt++) {
      if (attempt === MAX_ATTEMPTS) {
        throw new Error(`${MAX_ATTEMPTS} streams all reached the same gateway process`);
      }
      const stream = await OrderStream.open(system.gatewayUrl!, token);
      open.push(stream);
      expect(stream.status).toBe(200);
      const pid = serverPidOf(pids, gateways[0]!.port, stream.localPort);
      if (pid === undefined) throw new Error('no gateway process holds the stream connection');
      if (byPid.has(pid)) stream.close();
      else byPid.set(pid, stream);
    }
    return [...byPid.values()];
  }

  const placeOrder = async (token: string, quantity = 1): Promise<string> => {
    const placed = await client.post(
      '/v1/orders',
      { items: [{ productId: MOUSE, quantity }] },
      token,
    );
    expect(placed.status).toBe(201);
    return placed.body.id as string;
  };

  const placedFrame = (orderId: string) => (event: { event: string; data: any }) =>
    event.event === 'order.placed' && event.data.orderId === orderId;
  const cancelledFrame = (orderId: string) => (event: { event: string; data: any }) =>
    event.event === 'order.cancelled' && event.data.orderId === orderId;

  test("a user's streams receive their order placed and cancelled, on every gateway; another user's receive neither", async () => {
    const alice = await signUp(client, 'stream-alice');
    const bob = await signUp(client, 'stream-bob');
    const aliceStreams = await onEveryGateway(alice.token);
    const bobStreams = await onEveryGateway(bob.token);

    const orderId = await placeOrder(alice.token, 2);
    for (const stream of aliceStreams) {
      const placed = await stream.next(`order.placed of ${orderId}`, placedFrame(orderId));
      expect(placed.data).toMatchObject({
        orderId,
        status: 'CONFIRMED',
        currency: expect.any(String),
        items: [expect.objectContaining({ productId: MOUSE, quantity: 2 })],
      });
      expect(placed.id).toMatch(/^[0-9a-f-]{36}$/);
    }

    const cancelled = await client.post(`/v1/orders/${orderId}/cancel`, {}, alice.token);
    expect(cancelled.status).toBe(200);
    for (const stream of aliceStreams) {
      const event = await stream.next(`order.cancelled of ${orderId}`, cancelledFrame(orderId));
      expect(event.data).toMatchObject({
        orderId,
        status: 'CANCELLED',
        reason: 'USER_REQUESTED',
        previousStatus: 'CONFIRMED',
      });
      expect(stream.events.map((e) => e.event)).toEqual(['order.placed', 'order.cancelled']);
    }

    // Bob's own order reaches his streams after Alice's events have been dispatched by the same
    // processes (one subscription each, in order): had hers been sent to him, they would be there.
    const bobOrder = await placeOrder(bob.token);
    for (const stream of bobStreams) {
      await stream.next(`order.placed of ${bobOrder}`, placedFrame(bobOrder));
      expect(stream.events.map((e) => [e.event, e.data.orderId])).toEqual([
        ['order.placed', bobOrder],
      ]);
    }
    // And Bob's order did not reach Alice.
    for (const stream of aliceStreams) expect(stream.events).toHaveLength(2);
  });

  test("DELETE /v1/users/me: the open orders' order.cancelled (user deleted) arrive on the open streams", async () => {
    const carol = await signUp(client, 'stream-carol');
    const streams = await onEveryGateway(carol.token);
    const openOrders = [await placeOrder(carol.token), await placeOrder(carol.token, 2)];
    const cancelledBefore = await placeOrder(carol.token);
    expect(
      (await client.post(`/v1/orders/${cancelledBefore}/cancel`, {}, carol.token)).status,
    ).toBe(200);
    for (const stream of streams) {
      await stream.next(`order.cancelled of ${cancelledBefore}`, cancelledFrame(cancelledBefore));
    }

    const deleted = await fetch(`${system.gatewayUrl}/v1/users/me`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${carol.token}` },
    });
    expect(deleted.status).toBe(204);

    for (const stream of streams) {
      for (const orderId of openOrders) {
        const event = await stream.next(`order.cancelled of ${orderId}`, cancelledFrame(orderId));
        expect(event.data).toMatchObject({
          orderId,
          status: 'CANCELLED',
          reason: 'USER_DELETED',
          previousStatus: 'CONFIRMED',
        });
      }
      // The order cancelled before was not cancelled again.
      expect(stream.events.filter(cancelledFrame(cancelledBefore))).toHaveLength(1);
    }
    // The streams stayed open through it; the account is gone for its token now.
    expect((await client.get('/v1/users/me', carol.token)).status).toBe(401);
  });
});
