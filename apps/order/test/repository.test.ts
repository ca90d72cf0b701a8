import { randomUUID } from 'node:crypto';
import { runWithContext } from '@repo/service-kit/context';
import { DomainError } from '@repo/service-kit/errors';
import { IDEMPOTENCY_KEY_TTL_MS } from '@repo/service-kit/idempotency';
import { inTransaction } from '@repo/database/transaction';
import { Client } from 'pg';
import { createTestDatabase, type TestDatabase } from '@repo/database/testing';
import type { NewOrder } from '../src/domain/ports';
import { PrismaOrderRepository } from '../src/data/order-repository';
import { createDatabase, type Database, type PrismaClient } from '../src/data/prisma';

describe('PrismaOrderRepository against PostgreSQL', () => {
  let database: TestDatabase;
  let db: Database;
  let prisma: PrismaClient;
  let repository: PrismaOrderRepository;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDatabase({ connectionString: database.url, poolSize: 5 });
    prisma = db.prisma;
    repository = new PrismaOrderRepository(db);
  });

  afterAll(async () => {
    await db.close();
    await database.drop();
  });

  const product = (stock: number, priceCents = 500) =>
    prisma.product.create({
      data: {
        sku: `R-${randomUUID().slice(0, 8)}`,
        name: 'Repo product',
        priceCents,
        currency: 'EUR',
        stock,
      },
    });
  const newOrder = (
    items: { id: string; sku: string; name: string; priceCents: number; quantity: number }[],
    idempotencyKey?: string,
    userId = randomUUID(),
  ): NewOrder => ({
    userId,
    status: 'CONFIRMED',
    currency: 'EUR',
    idempotencyKey,
    items: items.map((item) => ({
      productId: item.id,
      sku: item.sku,
      name: item.name,
      unitPriceCents: item.priceCents,
      quantity: item.quantity,
    })),
    totalCents: items.reduce((sum, item) => sum + item.priceCents * item.quantity, 0),
  });
  const place = (order: NewOrder, repo = repository) =>
    repo.placeOrder(order, IDEMPOTENCY_KEY_TTL_MS);
  const stockOf = async (id: string) =>
    (await prisma.product.findUniqueOrThrow({ where: { id } })).stock;

  const heldAdvisoryLocks = async () =>
    Number(
      (
        await prisma.$queryRaw<
          { n: bigint }[]
        >`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted`
      )[0]!.n,
    );
  const waitFor = async (condition: () => Promise<boolean>) => {
    while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
  };

  it('has the seeded catalog', async () => {
    const products = await repository.listProducts(undefined, 100);
    expect(products.length).toBeGreaterThanOrEqual(10);
    expect(products.every((p) => p.currency === 'EUR' && p.priceCents > 0 && p.stock > 0)).toBe(
      true,
    );
  });

  it('pages products by sku', async () => {
    const first = await repository.listProducts(undefined, 3);
    const next = await repository.listProducts(first.at(-1)!.sku, 3);
    expect(next[0]!.sku > first.at(-1)!.sku).toBe(true);
  });

  it('writes the order and takes the stock in one go', async () => {
    const a = await product(5);
    const b = await product(5, 250);
    const result = await place(
      newOrder([
        { ...a, quantity: 2 },
        { ...b, quantity: 5 },
      ]),
    );
    expect(result.kind).toBe('created');
    if (result.kind !== 'created') return;
    expect(result.order.totalCents).toBe(2 * 500 + 5 * 250);
    expect(result.order.items).toHaveLength(2);
    expect(await stockOf(a.id)).toBe(3);
    expect(await stockOf(b.id)).toBe(0);
  });

  it('writes nothing when one line lacks stock', async () => {
    const a = await product(5);
    const b = await product(1);
    const userId = randomUUID();
    const result = await place(
      newOrder(
        [
          { ...a, quantity: 1 },
          { ...b, quantity: 2 },
        ],
        undefined,
        userId,
      ),
    );
    expect(result).toEqual({ kind: 'insufficient-stock', productId: b.id, available: 1 });
    expect(await stockOf(a.id)).toBe(5);
    expect(await prisma.order.count({ where: { userId } })).toBe(0);
  });

  it('writes nothing when a price changed since the order was priced', async () => {
    const a = await product(5, 500);
    await prisma.product.update({ where: { id: a.id }, data: { priceCents: 700 } });
    const result = await place(newOrder([{ ...a, quantity: 1 }]));
    expect(result).toEqual({ kind: 'price-changed' });
    expect(await stockOf(a.id)).toBe(5);
  });

  it('returns the live order that holds an idempotency key, with its fingerprint, per user', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const keyed = (fingerprint: string, user = userId) => ({
      ...newOrder([{ ...a, quantity: 1 }], 'k1', user),
      requestFingerprint: fingerprint,
    });
    const first = await place(keyed('f1'));
    if (first.kind !== 'created') throw new Error('not placed');
    const again = await place(keyed('f2'));
    expect(again).toMatchObject({ kind: 'duplicate-key', requestFingerprint: 'f1' });
    expect(again.kind === 'duplicate-key' && again.order).toEqual(first.order);
    expect(await stockOf(a.id)).toBe(9);
    const found = await repository.findOrderByIdempotencyKey(userId, 'k1', IDEMPOTENCY_KEY_TTL_MS);
    expect(found).toEqual({ order: first.order, requestFingerprint: 'f1' });
    // Another user's key of the same name is another key.
    expect((await place(keyed('f1', randomUUID()))).kind).toBe('created');
  });

  it('forgets an idempotency key once it has expired: the key then places a new order', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const first = await place(newOrder([{ ...a, quantity: 1 }], 'old-key', userId));
    if (first.kind !== 'created') throw new Error('not placed');
    // The first order was placed a day and a minute ago.
    await prisma.$executeRaw`UPDATE orders SET created_at = now() - interval '1 day 1 minute' WHERE id = ${first.order.id}::uuid`;
    expect(
      await repository.findOrderByIdempotencyKey(userId, 'old-key', IDEMPOTENCY_KEY_TTL_MS),
    ).toBeUndefined();
    const second = await place(newOrder([{ ...a, quantity: 2 }], 'old-key', userId));
    expect(second.kind).toBe('created');
    if (second.kind !== 'created') return;
    expect(second.order.id).not.toBe(first.order.id);
    expect((await repository.findOrder(first.order.id, userId))?.idempotencyKey).toBeUndefined();
    expect(await stockOf(a.id)).toBe(7);
  });

  /** A second connection holding a product's row lock, as a long transaction elsewhere would. */
  async function lockProduct(id: string): Promise<{ release(): Promise<void> }> {
    const client = new Client({ connectionString: database.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT 1 FROM products WHERE id = $1 FOR UPDATE', [id]);
    return {
      async release() {
        await client.query('ROLLBACK');
        await client.end();
      },
    };
  }

  it('answers key-in-use, without waiting, while another call holds the same key', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const lock = await lockProduct(a.id);
    // The first call takes the key, then waits for the product's row lock.
    const first = place(newOrder([{ ...a, quantity: 1 }], 'busy', userId));
    try {
      await waitFor(async () => (await heldAdvisoryLocks()) > 0);
      expect(await place(newOrder([{ ...a, quantity: 1 }], 'busy', userId))).toEqual({
        kind: 'key-in-use',
      });
    } finally {
      await lock.release();
    }
    expect((await first).kind).toBe('created');
    expect(await stockOf(a.id)).toBe(9);
  });

  it('rolls back and reports DEADLINE_EXCEEDED when a lock wait outlives the deadline', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const lock = await lockProduct(a.id);
    try {
      const attempt = runWithContext(
        { requestId: 'deadline-test', deadline: new Date(Date.now() + 300) },
        () => place(newOrder([{ ...a, quantity: 3 }], 'late', userId)),
      );
      await expect(attempt).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    } finally {
      await lock.release();
    }
    // Nothing was written: no order, the stock untouched, and the key is free.
    expect(await prisma.order.count({ where: { userId } })).toBe(0);
    expect(await stockOf(a.id)).toBe(10);
    expect((await place(newOrder([{ ...a, quantity: 3 }], 'late', userId))).kind).toBe('created');
  });

  it('starts nothing when the deadline has already passed', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const attempt = runWithContext(
      { requestId: 'expired', deadline: new Date(Date.now() - 1) },
      () => place(newOrder([{ ...a, quantity: 1 }], undefined, userId)),
    );
    await expect(attempt).rejects.toBeInstanceOf(DomainError);
    await expect(attempt).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(await prisma.order.count({ where: { userId } })).toBe(0);
  });

  it('works on a pool of one connection, out-of-stock answer included', async () => {
    const single = createDatabase({ connectionString: database.url, poolSize: 1 });
    try {
      const one = new PrismaOrderRepository(single);
      const a = await product(1);
      const userId = randomUUID();
      expect(await place(newOrder([{ ...a, quantity: 2 }], undefined, userId), one)).toEqual({
        kind: 'insufficient-stock',
        productId: a.id,
        available: 1,
      });
      expect((await place(newOrder([{ ...a, quantity: 1 }], 'k', userId), one)).kind).toBe(
        'created',
      );
      expect((await place(newOrder([{ ...a, quantity: 1 }], 'k', userId), one)).kind).toBe(
        'duplicate-key',
      );
    } finally {
      await single.close();
    }
  });

  it('turns a deadlock into ABORTED (retry), rolling back the victim', async () => {
    const a = await product(10);
    const b = await product(10);
    let arrived = 0;
    const bothHoldOne = async () => {
      arrived++;
      while (arrived < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    // Two transactions take the same two row locks in opposite orders: PostgreSQL picks a victim.
    const crosswise = (first: string, second: string) =>
      inTransaction(db.pool, async (client) => {
        await client.query('UPDATE products SET stock = stock - 1 WHERE id = $1', [first]);
        await bothHoldOne();
        await client.query('UPDATE products SET stock = stock - 1 WHERE id = $1', [second]);
      });
    const results = await Promise.allSettled([crosswise(a.id, b.id), crosswise(b.id, a.id)]);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failures.map((f) => (f.reason as DomainError).code)).toEqual(['ABORTED']);
    // Only the survivor's two decrements happened.
    expect((await stockOf(a.id)) + (await stockOf(b.id))).toBe(18);
  });

  it('cancels from an allowed status only, returning stock once', async () => {
    const a = await product(4);
    const userId = randomUUID();
    const placed = await place(newOrder([{ ...a, quantity: 4 }], undefined, userId));
    if (placed.kind !== 'created') throw new Error('not placed');
    expect(await repository.cancelOrder(placed.order.id, randomUUID(), ['CONFIRMED'])).toEqual({
      kind: 'not-found',
    });
    const cancelled = await repository.cancelOrder(placed.order.id, userId, [
      'PENDING',
      'CONFIRMED',
    ]);
    expect(cancelled.kind).toBe('cancelled');
    expect(await stockOf(a.id)).toBe(4);
    expect(await repository.cancelOrder(placed.order.id, userId, ['PENDING', 'CONFIRMED'])).toEqual(
      {
        kind: 'not-cancellable',
        status: 'CANCELLED',
      },
    );
    expect(await stockOf(a.id)).toBe(4);
  });

  it('lists orders newest first, before a cursor', async () => {
    const a = await product(10);
    const userId = randomUUID();
    for (let i = 0; i < 3; i++) await place(newOrder([{ ...a, quantity: 1 }], undefined, userId));
    const all = await repository.listOrders(userId, undefined, 10);
    expect(all).toHaveLength(3);
    const times = all.map((order) => order.createdAt.getTime());
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    const rest = await repository.listOrders(
      userId,
      { createdAt: all[0]!.createdAt, id: all[0]!.id },
      10,
    );
    expect(rest.map((order) => order.id)).toEqual(all.slice(1).map((order) => order.id));
  });

  it('is guarded by the database itself: stock can never go negative', async () => {
    const a = await product(1);
    await expect(
      prisma.$executeRaw`UPDATE products SET stock = stock - 2 WHERE id = ${a.id}::uuid`,
    ).rejects.toThrow(/products_stock_non_negative/);
  });
});
