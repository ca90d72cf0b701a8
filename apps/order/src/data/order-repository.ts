import type { Order, OrderStatus, Product } from '../domain/model';
import type {
  CancelOrderResult,
  NewOrder,
  OrderCursor,
  OrderRepository,
  PlaceOrderResult,
} from '../domain/ports';
import type { Pool } from 'pg';
import type { Database, PrismaClient } from './prisma';

const PRODUCT_FIELDS = {
  id: true,
  sku: true,
  name: true,
  priceCents: true,
  currency: true,
  stock: true,
} as const;
const ORDER_INCLUDE = {
  items: {
    select: { productId: true, sku: true, name: true, unitPriceCents: true, quantity: true },
    orderBy: { sku: 'asc' },
  },
} as const;

interface OrderRow {
  id: string;
  userId: string;
  status: OrderStatus;
  totalCents: bigint;
  currency: string;
  idempotencyKey: string | null;
  createdAt: Date;
  updatedAt: Date;
  items: Order['items'];
}

function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    userId: row.userId,
    status: row.status,
    items: row.items,
    totalCents: Number(row.totalCents),
    currency: row.currency,
    idempotencyKey: row.idempotencyKey ?? undefined,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/**
 * Interactive transactions wait up to maxWait for a pooled connection and must finish within
 * timeout. Prisma's defaults (2 s / 5 s) are too tight for bursts of orders on a small pool.
 */
const TRANSACTION_OPTIONS = { maxWait: 5_000, timeout: 10_000 } as const;

/** The only code in the order service that touches Prisma. */
export class PrismaOrderRepository implements OrderRepository {
  private readonly prisma: PrismaClient;
  private readonly pool: Pool;

  constructor(database: Database) {
    this.prisma = database.prisma;
    this.pool = database.pool;
  }

  listProducts(afterSku: string | undefined, limit: number): Promise<Product[]> {
    return this.prisma.product.findMany({
      where: afterSku === undefined ? {} : { sku: { gt: afterSku } },
      orderBy: { sku: 'asc' },
      take: limit,
      select: PRODUCT_FIELDS,
    });
  }

  /**
   * The hottest read (every product page), so it goes straight to the pg pool Prisma itself uses:
   * Prisma 6's client engine runs each query through its WebAssembly query compiler, a large share
   * of this service's CPU under load (`pnpm run profile order`). Still one parameterised statement.
   */
  async findProduct(id: string): Promise<Product | undefined> {
    const { rows } = await this.pool.query<Product>({
      name: 'product_by_id',
      text: 'SELECT id::text AS id, sku, name, price_cents AS "priceCents", currency, stock FROM products WHERE id = $1',
      values: [id],
    });
    return rows[0];
  }

  async findProducts(ids: readonly string[]): Promise<Product[]> {
    const { rows } = await this.pool.query<Product>({
      name: 'products_by_ids',
      text: 'SELECT id::text AS id, sku, name, price_cents AS "priceCents", currency, stock FROM products WHERE id = ANY($1::uuid[])',
      values: [[...ids]],
    });
    return rows;
  }

  /**
   * The write path, on one pooled connection in one transaction, in plain SQL: it was this
   * service's hottest code under load, and Prisma's interactive transactions cost a WebAssembly
   * query compilation per statement plus extra round trips (`pnpm run profile order --scenario s3`).
   *
   * 1. The order row first: a second call with the same idempotency key blocks on the unique index
   *    until the first commits, then fails (23505) and the caller returns the first order.
   * 2. The lines, in one INSERT.
   * 3. The stock, last, so its row locks are held for one round trip (until COMMIT): lock the rows
   *    in id order (two orders sharing products cannot deadlock) and take each quantity only if
   *    enough is left at the price we charged. Under READ COMMITTED PostgreSQL re-checks the WHERE
   *    clause on the latest row version, so concurrent orders cannot oversell; the CHECK
   *    (stock >= 0) constraint is the last guard. FOR NO KEY UPDATE, not FOR UPDATE: the
   *    order_items foreign key holds KEY SHARE locks on those products, which FOR UPDATE would
   *    conflict with.
   */
  async placeOrder(order: NewOrder): Promise<PlaceOrderResult> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      let header: { id: string; createdAt: Date; updatedAt: Date };
      try {
        const inserted = await client.query<{ id: string; createdAt: Date; updatedAt: Date }>({
          name: 'insert_order',
          text: `INSERT INTO orders (user_id, status, total_cents, currency, idempotency_key)
                 VALUES ($1, $2::order_status, $3, $4, $5)
                 RETURNING id::text AS id, created_at AS "createdAt", updated_at AS "updatedAt"`,
          values: [
            order.userId,
            order.status,
            order.totalCents,
            order.currency,
            order.idempotencyKey ?? null,
          ],
        });
        header = inserted.rows[0]!;
      } catch (error) {
        await client.query('ROLLBACK');
        if ((error as { code?: string }).code === '23505') return { kind: 'duplicate-key' };
        throw error;
      }

      await client.query({
        name: 'insert_order_items',
        text: `INSERT INTO order_items (order_id, product_id, sku, name, unit_price_cents, quantity)
               SELECT $1::uuid, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::int[])`,
        values: [
          header.id,
          order.items.map((item) => item.productId),
          order.items.map((item) => item.sku),
          order.items.map((item) => item.name),
          order.items.map((item) => item.unitPriceCents),
          order.items.map((item) => item.quantity),
        ],
      });
      const reserved = await client.query({
        name: 'reserve_stock',
        text: `WITH wanted AS (
                 SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS w(id, quantity, price)
               ), locked AS (
                 SELECT p.id FROM products p WHERE p.id IN (SELECT id FROM wanted) ORDER BY p.id FOR NO KEY UPDATE
               )
               UPDATE products p
                  SET stock = p.stock - w.quantity, updated_at = now()
                 FROM wanted w
                WHERE p.id = w.id
                  AND p.id IN (SELECT id FROM locked)
                  AND p.stock >= w.quantity
                  AND p.price_cents = w.price`,
        values: [
          order.items.map((item) => item.productId),
          order.items.map((item) => item.quantity),
          order.items.map((item) => item.unitPriceCents),
        ],
      });
      if (reserved.rowCount !== order.items.length) {
        await client.query('ROLLBACK');
        return this.whyNotReserved(order);
      }

      await client.query('COMMIT');
      return {
        kind: 'created',
        order: {
          id: header.id,
          userId: order.userId,
          status: order.status,
          items: [...order.items].sort((a, b) => a.sku.localeCompare(b.sku)),
          totalCents: order.totalCents,
          currency: order.currency,
          idempotencyKey: order.idempotencyKey,
          createdAt: header.createdAt,
          updatedAt: header.updatedAt,
        },
      };
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error));
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      // A connection that failed mid-transaction is discarded, not returned to the pool.
      client.release(broken);
    }
  }

  /** After a rollback: which line could not be reserved, from the current catalog. */
  private async whyNotReserved(order: NewOrder): Promise<PlaceOrderResult> {
    const products = new Map(
      (await this.findProducts(order.items.map((item) => item.productId))).map((p) => [p.id, p]),
    );
    for (const item of order.items) {
      const product = products.get(item.productId);
      if (!product || product.stock < item.quantity) {
        return {
          kind: 'insufficient-stock',
          productId: item.productId,
          available: product?.stock ?? 0,
        };
      }
    }
    return { kind: 'price-changed' };
  }

  async findOrderByIdempotencyKey(userId: string, key: string): Promise<Order | undefined> {
    const row = await this.prisma.order.findUnique({
      where: { userId_idempotencyKey: { userId, idempotencyKey: key } },
      include: ORDER_INCLUDE,
    });
    return row ? toOrder(row) : undefined;
  }

  async findOrder(id: string, userId: string): Promise<Order | undefined> {
    const row = await this.prisma.order.findFirst({
      where: { id, userId },
      include: ORDER_INCLUDE,
    });
    return row ? toOrder(row) : undefined;
  }

  async listOrders(
    userId: string,
    before: OrderCursor | undefined,
    limit: number,
  ): Promise<Order[]> {
    const rows = await this.prisma.order.findMany({
      where: {
        userId,
        ...(before
          ? {
              OR: [
                { createdAt: { lt: before.createdAt } },
                { createdAt: before.createdAt, id: { lt: before.id } },
              ],
            }
          : {}),
      },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: limit,
      include: ORDER_INCLUDE,
    });
    return rows.map(toOrder);
  }

  async cancelOrder(
    id: string,
    userId: string,
    from: readonly OrderStatus[],
  ): Promise<CancelOrderResult> {
    return this.prisma.$transaction(async (tx) => {
      // Conditional update: of two concurrent cancels, exactly one changes the row.
      const { count } = await tx.order.updateMany({
        where: { id, userId, status: { in: [...from] } },
        data: { status: 'CANCELLED' },
      });
      if (count === 0) {
        const existing = await tx.order.findFirst({
          where: { id, userId },
          select: { status: true },
        });
        return existing
          ? { kind: 'not-cancellable', status: existing.status }
          : { kind: 'not-found' };
      }
      await tx.$executeRaw`
        WITH locked AS (
          SELECT p.id FROM products p
           WHERE p.id IN (SELECT product_id FROM order_items WHERE order_id = ${id}::uuid)
           ORDER BY p.id FOR NO KEY UPDATE
        )
        UPDATE products p
           SET stock = p.stock + i.quantity, updated_at = now()
          FROM order_items i
         WHERE i.order_id = ${id}::uuid AND p.id = i.product_id AND p.id IN (SELECT id FROM locked)`;
      const row = await tx.order.findUniqueOrThrow({ where: { id }, include: ORDER_INCLUDE });
      return { kind: 'cancelled', order: toOrder(row) };
    }, TRANSACTION_OPTIONS);
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
