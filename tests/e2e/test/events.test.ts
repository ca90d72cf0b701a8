import { UserServiceClient } from '@repo/contracts/user/v1';
import { createServiceClient } from '@repo/service-kit/grpc-client';
import {
  MOUSE,
  api,
  query,
  signUp,
  sleep,
  startTestSystem,
  type Api,
  type TestSystem,
} from './system';

/**
 * Events between the services, through the real processes and a real broker: the order service's
 * projection of users (from UserRegistered/UserDeleted) and what UserDeleted does to orders. Both
 * transports: the broker database on PostgreSQL (what `pnpm dev` uses) and NATS JetStream.
 */

/** Polls `check` until it returns a value (not undefined), for at most `timeoutMs`. */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe.each(['postgres', 'nats'] as const)(
  'events between services (%s transport)',
  (transport) => {
    let system: TestSystem;
    let client: Api;

    beforeAll(async () => {
      // Sent events stay in the outboxes (marked) for the tests below to look at.
      const retain = { OUTBOX_RETAIN_SENT_MS: '3600000' };
      system = await startTestSystem(
        {},
        { eventsTransport: transport, env: { user: retain, order: retain } },
      );
      client = api(system.gatewayUrl!);
    });

    afterAll(async () => {
      await system?.stop();
    });

    /** Waits until the order service's projection holds the user, as registered. */
    const projected = (userId: string) =>
      eventually(`user ${userId} in the order service's projection`, async () => {
        const rows = await query<{ registered_at: Date | null }>(
          system.databases.order!,
          'SELECT registered_at FROM known_users WHERE user_id = $1',
          [userId],
        );
        return rows[0]?.registered_at ? rows[0] : undefined;
      });

    const stock = async (productId: string) =>
      (await client.get(`/v1/products/${productId}`)).body.stock as number;

    test('with the user service stopped, an order for a known user is placed (201)', async () => {
      const user = await signUp(client, 'known');
      await projected(user.id);

      const users = [...system.replicas.user!];
      await Promise.all(users.map((replica) => replica.stop()));
      try {
        // The user service is really gone: what needs it fails fast...
        expect((await client.get('/v1/users/me', user.token)).status).toBe(503);
        // ...and placing an order does not need it any more.
        const placed = await client.post(
          '/v1/orders',
          { items: [{ productId: MOUSE, quantity: 1 }] },
          user.token,
        );
        expect(placed.status).toBe(201);
        expect(placed.body.userId).toBe(user.id);
      } finally {
        await Promise.all(users.map((replica) => replica.start()));
      }
      await eventually('the user service answering again', async () =>
        (await client.get('/v1/users/me', user.token)).status === 200 ? true : undefined,
      );
    });

    test('a user who orders right after registering is served (the user service is asked)', async () => {
      const user = await signUp(client, 'quick');
      const placed = await client.post(
        '/v1/orders',
        { items: [{ productId: MOUSE, quantity: 1 }] },
        user.token,
      );
      expect(placed.status).toBe(201);
    });

    test("UserDeleted cancels the user's open orders and returns their stock, once", async () => {
      const user = await signUp(client, 'leaving');
      const before = await stock(MOUSE);
      const orders: string[] = [];
      for (const quantity of [1, 2]) {
        const placed = await client.post(
          '/v1/orders',
          { items: [{ productId: MOUSE, quantity }] },
          user.token,
        );
        expect(placed.status).toBe(201);
        orders.push(placed.body.id);
      }
      expect(await stock(MOUSE)).toBe(before - 3);

      const users = createServiceClient(UserServiceClient, system.replicas.user![0]!.address, {
        retry: false,
      });
      try {
        await users.deleteUser({ id: user.id });
      } finally {
        users.close();
      }

      for (const id of orders) {
        await eventually(`order ${id} cancelled`, async () => {
          const order = await client.get(`/v1/orders/${id}`, user.token);
          return order.body.status === 'CANCELLED' ? order : undefined;
        });
      }
      expect(await stock(MOUSE)).toBe(before);
      // One OrderCancelled per order, and the deletion applied once (one inbox row).
      const cancelled = await query<{ aggregate_id: string }>(
        system.databases.order!,
        `SELECT aggregate_id FROM outbox WHERE type = 'order.v1.OrderCancelled' AND aggregate_id = ANY($1)`,
        [orders],
      );
      expect(cancelled.map((row) => row.aggregate_id).sort()).toEqual([...orders].sort());
      const deletions = await query(
        system.databases.user!,
        `SELECT event_id FROM outbox WHERE type = 'user.v1.UserDeleted' AND aggregate_id = $1`,
        [user.id],
      );
      expect(deletions).toHaveLength(1);

      // From now on the order service knows the user is gone, with or without the user service.
      const refused = await client.post(
        '/v1/orders',
        { items: [{ productId: MOUSE, quantity: 1 }] },
        user.token,
      );
      expect(refused.status).toBe(409);
      expect(refused.body.detail).toContain('does not exist');
      expect(await stock(MOUSE)).toBe(before);
    });
  },
);
