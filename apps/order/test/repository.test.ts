import { randomUUID } from 'node:crypto';
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
  const stockOf = async (id: string) =>
    (await prisma.product.findUniqueOrThrow({ where: { id } })).stock;

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
    const result = await repository.placeOrder(
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
    const result = await repository.placeOrder(
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
    const result = await repository.placeOrder(newOrder([{ ...a, quantity: 1 }]));
    expect(result).toEqual({ kind: 'price-changed' });
    expect(await stockOf(a.id)).toBe(5);
  });

  it('reports a reused idempotency key, per user', async () => {
    const a = await product(10);
    const userId = randomUUID();
    const first = await repository.placeOrder(newOrder([{ ...a, quantity: 1 }], 'k1', userId));
    expect(first.kind).toBe('created');
    expect(await repository.placeOrder(newOrder([{ ...a, quantity: 1 }], 'k1', userId))).toEqual({
      kind: 'duplicate-key',
    });
    expect(await stockOf(a.id)).toBe(9);
    const found = await repository.findOrderByIdempotencyKey(userId, 'k1');
    expect(found?.id).toBe(first.kind === 'created' ? first.order.id : undefined);
    expect((await repository.placeOrder(newOrder([{ ...a, quantity: 1 }], 'k1'))).kind).toBe(
      'created',
    );
  });

  it('cancels from an allowed status only, returning stock once', async () => {
    const a = await product(4);
    const userId = randomUUID();
    const placed = await repository.placeOrder(
      newOrder([{ ...a, quantity: 4 }], undefined, userId),
    );
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
    for (let i = 0; i < 3; i++)
      await repository.placeOrder(newOrder([{ ...a, quantity: 1 }], undefined, userId));
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
