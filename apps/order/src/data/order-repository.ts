import type { Order, OrderStatus, Product } from '../domain/model';
import type {
  CancelOrderResult,
  KeyedOrder,
  NewOrder,
  OrderCursor,
  OrderRepository,
  PlaceOrderResult,
} from '../domain/ports';
import { inTransaction } from '@repo/database/transaction';
import type { Pool, PoolClient } from 'pg';
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
  /** bigint from Prisma, a decimal string from pg. */
  totalCents: bigint | string;
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

/** An order and its lines (sorted by sku) in one row; callers append WHERE ... GROUP BY o.id. */
const ORDER_WITH_ITEMS_SQL = `
  SELECT o.id::text AS id, o.user_id::text AS "userId", o.status, o.total_cents AS "totalCents",
         o.currency, o.idempotency_key AS "idempotencyKey", o.request_fingerprint AS "requestFingerprint",
         o.created_at AS "createdAt", o.updated_at AS "updatedAt",
         COALESCE(json_agg(json_build_object(
           'productId', i.product_id, 'sku', i.sku, 'name', i.name,
           'unitPriceCents', i.unit_price_cents, 'quantity', i.quantity) ORDER BY i.sku)
           FILTER (WHERE i.order_id IS NOT NULL), '[]') AS items
    FROM orders o LEFT JOIN order_items i ON i.order_id = o.id`;

type Queryable = Pick<Pool, 'query'>;

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
   * The write path, on one pooled connection in one transaction bound by the caller's deadline
   * (`inTransaction`: statement and lock timeouts from the time left, COMMIT only while it holds),
   * in plain SQL: it was this service's hottest code under load, and Prisma's interactive
   * transactions cost a WebAssembly query compilation per statement plus extra round trips
   * (`pnpm run profile order --scenario s3`).
   *
   * 0. With an idempotency key: take a transaction-scoped advisory lock on (user, key). If another
   *    transaction holds it, that call is still placing its order: `key-in-use`, without waiting.
   *    Holding it, look for a live order with the key (`duplicate-key`: the caller compares the
   *    request fingerprints) and release the key of an expired one.
   * 1. The order row, then its lines in one INSERT.
   * 2. The stock, last, so its row locks are held for one round trip (until COMMIT): lock the rows
   *    in id order (two orders sharing products cannot deadlock) and take each quantity only if
   *    enough is left at the price we charged. Under READ COMMITTED PostgreSQL re-checks the WHERE
   *    clause on the latest row version, so concurrent orders cannot oversell; the CHECK
   *    (stock >= 0) constraint is the last guard. FOR NO KEY UPDATE, not FOR UPDATE: the
   *    order_items foreign key holds KEY SHARE locks on those products, which FOR UPDATE would
   *    conflict with.
   * 3. If a line could not be reserved, say why from the rows we hold, on the same connection, and
   *    roll back. (Asking the pool for a second connection while holding this one deadlocks a
   *    pool of one.)
   */
  async placeOrder(order: NewOrder, keyTtlMs: number): Promise<PlaceOrderResult> {
    return inTransaction(this.pool, async (client, control): Promise<PlaceOrderResult> => {
      const key = order.idempotencyKey;
      if (key !== undefined) {
        const { rows } = await client.query<{ locked: boolean }>({
          name: 'lock_idempotency_key',
          text: `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0)) AS locked`,
          values: [order.userId, key],
        });
        if (!rows[0]!.locked) return { kind: 'key-in-use' };
        const existing = await this.keyedOrder(client, order.userId, key);
        if (existing) {
          if (existing.createdAt.getTime() > Date.now() - keyTtlMs) {
            control.rollbackOnly();
            return {
              kind: 'duplicate-key',
              order: toOrder(existing),
              requestFingerprint: existing.requestFingerprint ?? undefined,
            };
          }
          // Remembered long enough: the key is free for a new request.
          await client.query({
            name: 'release_idempotency_key',
            text: 'UPDATE orders SET idempotency_key = NULL WHERE id = $1',
            values: [existing.id],
          });
        }
      }

      const inserted = await client.query<{ id: string; createdAt: Date; updatedAt: Date }>({
        name: 'insert_order',
        text: `INSERT INTO orders (user_id, status, total_cents, currency, idempotency_key, request_fingerprint)
               VALUES ($1, $2::order_status, $3, $4, $5, $6)
               RETURNING id::text AS id, created_at AS "createdAt", updated_at AS "updatedAt"`,
        values: [
          order.userId,
          order.status,
          order.totalCents,
          order.currency,
          key ?? null,
          key === undefined ? null : (order.requestFingerprint ?? null),
        ],
      });
      const header = inserted.rows[0]!;
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
        control.rollbackOnly();
        return this.whyNotReserved(client, order);
      }
      return {
        kind: 'created',
        order: {
          id: header.id,
          userId: order.userId,
          status: order.status,
          items: [...order.items].sort((a, b) => a.sku.localeCompare(b.sku)),
          totalCents: order.totalCents,
          currency: order.currency,
          idempotencyKey: key,
          createdAt: header.createdAt,
          updatedAt: header.updatedAt,
        },
      };
    });
  }

  /** Inside the failed transaction, on its connection: which line could not be reserved. */
  private async whyNotReserved(client: PoolClient, order: NewOrder): Promise<PlaceOrderResult> {
    const { rows } = await client.query<{ id: string; stock: number }>({
      name: 'stock_by_ids',
      text: 'SELECT id::text AS id, stock FROM products WHERE id = ANY($1::uuid[])',
      values: [order.items.map((item) => item.productId)],
    });
    const stock = new Map(rows.map((row) => [row.id, row.stock]));
    for (const item of order.items) {
      const available = stock.get(item.productId);
      if (available === undefined || available < item.quantity) {
        return { kind: 'insufficient-stock', productId: item.productId, available: available ?? 0 };
      }
    }
    return { kind: 'price-changed' };
  }

  /** An order with its lines, by (user, idempotency key), on `client`, whatever its age. */
  private async keyedOrder(
    client: Queryable,
    userId: string,
    key: string,
  ): Promise<(OrderRow & { requestFingerprint: string | null }) | undefined> {
    const { rows } = await client.query<OrderRow & { requestFingerprint: string | null }>({
      name: 'order_by_idempotency_key',
      text: `${ORDER_WITH_ITEMS_SQL} WHERE o.user_id = $1 AND o.idempotency_key = $2 GROUP BY o.id`,
      values: [userId, key],
    });
    return rows[0];
  }

  async findOrderByIdempotencyKey(
    userId: string,
    key: string,
    ttlMs: number,
  ): Promise<KeyedOrder | undefined> {
    const row = await this.keyedOrder(this.pool, userId, key);
    if (!row || row.createdAt.getTime() <= Date.now() - ttlMs) return undefined;
    return { order: toOrder(row), requestFingerprint: row.requestFingerprint ?? undefined };
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

  /** One transaction bound by the caller's deadline, like placeOrder. */
  async cancelOrder(
    id: string,
    userId: string,
    from: readonly OrderStatus[],
  ): Promise<CancelOrderResult> {
    return inTransaction(this.pool, async (client): Promise<CancelOrderResult> => {
      // Conditional update: of two concurrent cancels, exactly one changes the row.
      const updated = await client.query({
        name: 'cancel_order',
        text: `UPDATE orders SET status = 'CANCELLED', updated_at = now()
                WHERE id = $1 AND user_id = $2 AND status = ANY($3::order_status[])`,
        values: [id, userId, [...from]],
      });
      if (updated.rowCount === 0) {
        const { rows } = await client.query<{ status: OrderStatus }>({
          name: 'order_status',
          text: 'SELECT status FROM orders WHERE id = $1 AND user_id = $2',
          values: [id, userId],
        });
        return rows[0]
          ? { kind: 'not-cancellable', status: rows[0].status }
          : { kind: 'not-found' };
      }
      await client.query({
        name: 'restock_order',
        text: `WITH locked AS (
                 SELECT p.id FROM products p
                  WHERE p.id IN (SELECT product_id FROM order_items WHERE order_id = $1)
                  ORDER BY p.id FOR NO KEY UPDATE
               )
               UPDATE products p
                  SET stock = p.stock + i.quantity, updated_at = now()
                 FROM order_items i
                WHERE i.order_id = $1 AND p.id = i.product_id AND p.id IN (SELECT id FROM locked)`,
        values: [id],
      });
      const { rows } = await client.query<OrderRow>({
        name: 'order_by_id',
        text: `${ORDER_WITH_ITEMS_SQL} WHERE o.id = $1 GROUP BY o.id`,
        values: [id],
      });
      return { kind: 'cancelled', order: toOrder(rows[0]!) };
    });
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
