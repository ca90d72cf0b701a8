import { randomUUID } from 'node:crypto';
import { CancellationReason, OrderCancelled, OrderPlaced } from '@repo/contracts/order/v1/events';
import { OrderStatus as ProtoOrderStatus } from '@repo/contracts/order/v1';
import { UserDeleted, UserRegistered } from '@repo/contracts/user/v1/events';
import { newEnvelope } from '@repo/events/envelope';
import { EventTypes } from '@repo/events/subjects';
import { backoffMs, isPermanent } from '@repo/events/transport';
import { createTestDatabase, type TestDatabase } from '@repo/database/testing';
import { DomainError } from '@repo/service-kit/errors';
import { IDEMPOTENCY_KEY_TTL_MS } from '@repo/service-kit/idempotency';
import { createLogger } from '@repo/service-kit/logger';
import { PrismaOrderRepository } from '../src/data/order-repository';
import { createDatabase, type Database, type PrismaClient } from '../src/data/prisma';
import { KnownUsers } from '../src/domain/known-users';
import type { NewOrder, UserDirectory } from '../src/domain/ports';
import { CANCELLABLE } from '../src/domain/status';
import { userEventsConsumer } from '../src/events/user-events';

/**
 * The order service's events against PostgreSQL: what it publishes goes into the outbox in the
 * transaction of the change, and what it consumes (the user service's events) is applied once.
 */
describe('order events against PostgreSQL', () => {
  let database: TestDatabase;
  let db: Database;
  let prisma: PrismaClient;
  let repository: PrismaOrderRepository;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDatabase({ connectionString: database.url, poolSize: 8 });
    prisma = db.prisma;
    repository = new PrismaOrderRepository(db);
  });

  afterAll(async () => {
    await db.close();
    await database.drop();
  });

  const product = (stock: number) =>
    prisma.product.create({
      data: {
        sku: `E-${randomUUID().slice(0, 8)}`,
        name: 'Events product',
        priceCents: 250,
        currency: 'EUR',
        stock,
      },
    });
  const newOrder = (
    userId: string,
    item: { id: string; sku: string; name: string },
    quantity = 1,
  ): NewOrder => ({
    userId,
    status: 'CONFIRMED',
    currency: 'EUR',
    idempotencyKey: undefined,
    items: [{ productId: item.id, sku: item.sku, name: item.name, unitPriceCents: 250, quantity }],
    totalCents: 250 * quantity,
  });
  const place = async (order: NewOrder) => {
    const result = await repository.placeOrder(order, IDEMPOTENCY_KEY_TTL_MS);
    if (result.kind !== 'created') throw new Error(`not placed: ${result.kind}`);
    return result.order;
  };
  const stockOf = async (id: string) =>
    (await prisma.product.findUniqueOrThrow({ where: { id } })).stock;
  const eventsOf = (aggregateId: string) =>
    prisma.outbox.findMany({ where: { aggregateId }, orderBy: { position: 'asc' } });
  const event = () => ({ consumer: 'order-users', eventId: randomUUID() });

  it('announces a placed order in its transaction, and nothing for an order refused', async () => {
    const item = await product(5);
    const userId = randomUUID();
    const order = await place(newOrder(userId, item, 2));

    const [placed, ...more] = await eventsOf(order.id);
    expect(more).toEqual([]);
    expect(placed).toMatchObject({ type: 'order.v1.OrderPlaced', source: 'order', sentAt: null });
    expect(OrderPlaced.decode(placed!.payload)).toMatchObject({
      orderId: order.id,
      userId,
      totalCents: 500,
      currency: 'EUR',
      status: ProtoOrderStatus.ORDER_STATUS_CONFIRMED,
      items: [{ productId: item.id, quantity: 2, unitPriceCents: 250 }],
    });

    const before = await prisma.outbox.count();
    const refused = await repository.placeOrder(newOrder(userId, item, 99), IDEMPOTENCY_KEY_TTL_MS);
    expect(refused.kind).toBe('insufficient-stock');
    expect(await prisma.outbox.count()).toBe(before);
  });

  it('announces a cancellation with the status the order had', async () => {
    const item = await product(5);
    const userId = randomUUID();
    const order = await place(newOrder(userId, item));
    await repository.cancelOrder(order.id, userId, CANCELLABLE);

    const types = (await eventsOf(order.id)).map((row) => row.type);
    expect(types).toEqual(['order.v1.OrderPlaced', 'order.v1.OrderCancelled']);
    const cancelled = (await eventsOf(order.id))[1]!;
    expect(OrderCancelled.decode(cancelled.payload)).toMatchObject({
      orderId: order.id,
      userId,
      previousStatus: ProtoOrderStatus.ORDER_STATUS_CONFIRMED,
      reason: CancellationReason.CANCELLATION_REASON_USER_REQUESTED,
    });
    // A second cancel changes nothing and announces nothing.
    expect((await repository.cancelOrder(order.id, userId, CANCELLABLE)).kind).toBe(
      'not-cancellable',
    );
    expect(await eventsOf(order.id)).toHaveLength(2);
  });

  it('applies UserRegistered once', async () => {
    const userId = randomUUID();
    const registered = event();
    expect(await repository.knownUserStatus(userId)).toBeUndefined();
    expect(await repository.recordUserRegistered(registered, userId, new Date())).toBe(true);
    expect(await repository.recordUserRegistered(registered, userId, new Date())).toBe(false);
    expect(await repository.knownUserStatus(userId)).toBe('active');
    expect(await prisma.inbox.count({ where: { eventId: registered.eventId } })).toBe(1);
  });

  it("UserDeleted cancels the user's open orders and returns their stock, once", async () => {
    const item = await product(10);
    const userId = randomUUID();
    await repository.recordUserRegistered(event(), userId, new Date());
    const open = [await place(newOrder(userId, item, 1)), await place(newOrder(userId, item, 2))];
    const alreadyCancelled = await place(newOrder(userId, item, 3));
    await repository.cancelOrder(alreadyCancelled.id, userId, CANCELLABLE);
    const otherUsers = await place(newOrder(randomUUID(), item, 1));
    expect(await stockOf(item.id)).toBe(10 - 1 - 2 - 1);

    const deleted = event();
    const cancelled = await repository.recordUserDeleted(deleted, userId, new Date(), CANCELLABLE);
    expect(cancelled?.sort()).toEqual(open.map((order) => order.id).sort());
    expect(await stockOf(item.id)).toBe(10 - 1);
    expect(await repository.knownUserStatus(userId)).toBe('deleted');
    for (const order of open) {
      const [, announced] = await eventsOf(order.id);
      expect(OrderCancelled.decode(announced!.payload)).toMatchObject({
        reason: CancellationReason.CANCELLATION_REASON_USER_DELETED,
        previousStatus: ProtoOrderStatus.ORDER_STATUS_CONFIRMED,
      });
    }
    expect(await eventsOf(alreadyCancelled.id)).toHaveLength(2);
    expect(await eventsOf(otherUsers.id)).toHaveLength(1);

    // Delivered again: nothing changes, nothing is announced twice.
    expect(await repository.recordUserDeleted(deleted, userId, new Date(), CANCELLABLE)).toBe(
      undefined,
    );
    expect(await stockOf(item.id)).toBe(10 - 1);
    for (const order of open) expect(await eventsOf(order.id)).toHaveLength(2);

    // An order for the deleted user is refused, and writes nothing.
    expect((await repository.placeOrder(newOrder(userId, item), IDEMPOTENCY_KEY_TTL_MS)).kind).toBe(
      'user-deleted',
    );
    expect(await stockOf(item.id)).toBe(10 - 1);
  });

  /** ABORTED (a conflict PostgreSQL resolved by rolling back): nothing was done, retry. */
  const abortedOrThrow = (error: unknown) => {
    if (error instanceof DomainError && error.code === 'ABORTED') return 'aborted' as const;
    throw error;
  };
  /** Applies one UserDeleted as the consumer does: delivered again until it is acknowledged. */
  const deleteOnce = async (userId: string) => {
    const deleted = event();
    for (let attempt = 1; ; attempt++) {
      try {
        return await repository.recordUserDeleted(deleted, userId, new Date(), CANCELLABLE);
      } catch (error) {
        if (attempt === 5) throw error;
        abortedOrThrow(error);
      }
    }
  };

  it('never leaves an order open for a user whose deletion raced with it', async () => {
    // Each user's order and deletion run at the same moment: whichever order they commit in, the
    // order ends cancelled (deletion second) or is refused (deletion first).
    const item = await product(1_000);
    const users = Array.from({ length: 20 }, () => randomUUID());
    await Promise.all(
      users.map((userId) => repository.recordUserRegistered(event(), userId, new Date())),
    );
    const outcomes = await Promise.all(
      users.map(async (userId) => {
        const [placed] = await Promise.all([
          repository
            .placeOrder(newOrder(userId, item), IDEMPOTENCY_KEY_TTL_MS)
            .then((result) => result.kind, abortedOrThrow),
          deleteOnce(userId),
        ]);
        return placed;
      }),
    );
    // Placed (then cancelled by the deletion), refused, or rolled back by a conflict: never open.
    expect(
      outcomes.filter((kind) => !['created', 'user-deleted', 'aborted'].includes(kind)),
    ).toEqual([]);
    const stillOpen = await prisma.order.count({
      where: { userId: { in: users }, status: { not: 'CANCELLED' } },
    });
    expect(stillOpen).toBe(0);
    expect(await stockOf(item.id)).toBe(1_000);
  });
});

describe('KnownUsers', () => {
  const remote = (exists: boolean) => {
    const directory = { calls: 0, userExists: async () => (directory.calls++, exists) };
    return directory satisfies UserDirectory;
  };
  const withStatus = (status: 'active' | 'deleted' | undefined) =>
    ({ knownUserStatus: async () => status }) as unknown as PrismaOrderRepository;

  it('answers from the projection for users it knows, without asking the user service', async () => {
    const users = remote(false);
    expect(await new KnownUsers(withStatus('active'), users).userExists(randomUUID())).toBe(true);
    expect(await new KnownUsers(withStatus('deleted'), remote(true)).userExists(randomUUID())).toBe(
      false,
    );
    expect(users.calls).toBe(0);
  });

  it('asks the user service about a user it has not heard of yet', async () => {
    const users = remote(true);
    expect(await new KnownUsers(withStatus(undefined), users).userExists(randomUUID())).toBe(true);
    expect(users.calls).toBe(1);
  });
});

describe('the consumer of user events', () => {
  const unreachable = new Error('connect ECONNREFUSED 127.0.0.1:5432');
  /** KnownUsers whose database is away: every effect fails, transiently. */
  const databaseAway = {
    registered: () => Promise.reject(unreachable),
    deleted: () => Promise.reject(unreachable),
  } as unknown as KnownUsers;
  const consumer = userEventsConsumer(
    databaseAway,
    createLogger({ name: 'test', level: 'silent', pretty: false }),
  );
  const deliver = (type: string, payload: Uint8Array) =>
    consumer.handler({
      envelope: newEnvelope({ type, aggregateId: randomUUID(), payload, source: 'test' }),
      subject: 'events.test',
      attempt: 1,
    });
  const failureOf = (delivery: Promise<void>) =>
    delivery.then(
      () => {
        throw new Error('the handler resolved');
      },
      (error: unknown) => error,
    );

  it('fails permanently (dead-lettered at once) for an event it can never apply', async () => {
    const notUuid = UserDeleted.encode(UserDeleted.fromPartial({ userId: 'not-a-uuid' })).finish();
    const undecodable = Uint8Array.from([0x0a, 0xff]); // field 1, a length past the end
    const cases = [
      deliver(EventTypes.UserDeleted, notUuid),
      deliver(EventTypes.UserRegistered, undecodable),
      deliver('test.v1.Unknown', new Uint8Array()),
    ];
    for (const error of await Promise.all(cases.map(failureOf))) {
      expect(isPermanent(error)).toBe(true);
    }
  });

  it('fails transiently (retried) while its database is away, for minutes before parking', async () => {
    const registered = UserRegistered.encode(
      UserRegistered.fromPartial({ userId: randomUUID() }),
    ).finish();
    const error = await failureOf(deliver(EventTypes.UserRegistered, registered));
    expect(error).toBe(unreachable);
    expect(isPermanent(error)).toBe(false);
    const { maxAttempts = 0, backoff = {} } = consumer.options ?? {};
    // The shortest total wait (every jittered delay at its half) outlasts a 20 s restart many times.
    const shortest = Array.from({ length: maxAttempts - 1 }, (_, i) =>
      backoffMs(i + 1, backoff, () => 0),
    ).reduce((sum, ms) => sum + ms, 0);
    expect(shortest).toBeGreaterThan(100_000);
  });
});
