import type { Order, OrderStatus, Product } from '../domain/model';
import type {
  CancelOrderResult,
  EventRef,
  KeyedOrder,
  NewOrder,
  OrderCursor,
  OrderRepository,
  PlaceOrderResult,
} from '../domain/ports';
import { inTransaction } from '@repo/database/transaction';
import type { Queryable } from '@repo/database/sql';
import { handleOnce } from '@repo/events/inbox';
import { orderCancelled, orderPlaced, publishInTransaction } from '../events/published';
import * as sql from './queries';
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
   * of this service's CPU under load (`pnpm run profile order`). Still one parameterised statement,
   * typed against the schema and compiled once (./queries.ts).
   */
  async findProduct(id: string): Promise<Product | undefined> {
    const { rows } = await sql.productById.run(this.pool, { id });
    return rows[0];
  }

  async findProducts(ids: readonly string[]): Promise<Product[]> {
    const { rows } = await sql.productsByIds.run(this.pool, { ids: [...ids] });
    return rows;
  }

  /**
   * The write path, on one pooled connection in one transaction bound by the caller's deadline
   * (`inTransaction`: statement and lock timeouts from the time left, COMMIT only while it holds),
   * in SQL typed against the schema (./queries.ts): it was this service's hottest code under load, and Prisma's interactive
   * transactions cost a WebAssembly query compilation per statement plus extra round trips
   * (`pnpm run profile order --scenario s3`).
   *
   * 0. With an idempotency key: take a transaction-scoped advisory lock on (user, key). If another
   *    transaction holds it, that call is still placing its order: `key-in-use`, without waiting.
   *    Holding it, look for a live order with the key (`duplicate-key`: the caller compares the
   *    request fingerprints) and release the key of an expired one.
   * 1. The user's row of the projection, share-locked (a deleted user orders nothing), the order
   *    row, then its lines in one INSERT.
   * 2. The order is announced (OrderPlaced into the outbox) in the same transaction.
   * 3. The stock, last, so its row locks are held for one round trip (until COMMIT): lock the rows
   *    in id order (two orders sharing products cannot deadlock) and take each quantity only if
   *    enough is left at the price we charged. Under READ COMMITTED PostgreSQL re-checks the WHERE
   *    clause on the latest row version, so concurrent orders cannot oversell; the CHECK
   *    (stock >= 0) constraint is the last guard. FOR NO KEY UPDATE, not FOR UPDATE: the
   *    order_items foreign key holds KEY SHARE locks on those products, which FOR UPDATE would
   *    conflict with.
   * 4. If a line could not be reserved, say why from the rows we hold, on the same connection, and
   *    roll back. (Asking the pool for a second connection while holding this one deadlocks a
   *    pool of one.)
   */
  async placeOrder(order: NewOrder, keyTtlMs: number): Promise<PlaceOrderResult> {
    return inTransaction(this.pool, async (client, control): Promise<PlaceOrderResult> => {
      const key = order.idempotencyKey;
      if (key !== undefined) {
        const { rows } = await sql.lockIdempotencyKey.run(client, { userId: order.userId, key });
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
          await sql.releaseIdempotencyKey.run(client, { id: existing.id });
        }
      }

      if (await this.userDeleted(client, order.userId)) {
        control.rollbackOnly();
        return { kind: 'user-deleted' };
      }

      const inserted = await sql.insertOrder.run(client, {
        userId: order.userId,
        status: order.status,
        totalCents: String(order.totalCents),
        currency: order.currency,
        key: key ?? null,
        fingerprint: key === undefined ? null : (order.requestFingerprint ?? null),
      });
      const header = inserted.rows[0]!;
      await sql.insertOrderItems.run(client, {
        orderId: header.id,
        productIds: order.items.map((item) => item.productId),
        skus: order.items.map((item) => item.sku),
        names: order.items.map((item) => item.name),
        prices: order.items.map((item) => item.unitPriceCents),
        quantities: order.items.map((item) => item.quantity),
      });
      const placed: Order = {
        id: header.id,
        userId: order.userId,
        status: order.status,
        items: [...order.items].sort((a, b) => a.sku.localeCompare(b.sku)),
        totalCents: order.totalCents,
        currency: order.currency,
        idempotencyKey: key,
        createdAt: header.createdAt,
        updatedAt: header.updatedAt,
      };
      // Before the stock, not after: a statement after reserveStock would hold the hot rows' locks
      // one more round trip (S3 lost a third of its throughput that way). The order row is new
      // and invisible until COMMIT, so no later event of this order can be positioned before it.
      await publishInTransaction(client, orderPlaced(placed));
      const reserved = await sql.reserveStock.run(client, {
        productIds: order.items.map((item) => item.productId),
        quantities: order.items.map((item) => item.quantity),
        prices: order.items.map((item) => item.unitPriceCents),
      });
      if (reserved.rowCount !== order.items.length) {
        control.rollbackOnly(); // the event goes with the order
        return this.whyNotReserved(client, order);
      }
      return { kind: 'created', order: placed };
    });
  }

  /**
   * Share-locks the user's row of the projection for the transaction (see lockKnownUser): true when
   * the user's deletion was applied. A user the projection does not hold yet (confirmed by the user
   * service a moment ago) is remembered first, so that there is a row to lock.
   */
  private async userDeleted(client: PoolClient, userId: string): Promise<boolean> {
    let { rows } = await sql.lockKnownUser.run(client, { userId });
    if (rows.length === 0) {
      await sql.rememberUser.run(client, { userId });
      ({ rows } = await sql.lockKnownUser.run(client, { userId }));
    }
    return rows[0]?.deletedAt != null;
  }

  /** Inside the failed transaction, on its connection: which line could not be reserved. */
  private async whyNotReserved(client: PoolClient, order: NewOrder): Promise<PlaceOrderResult> {
    const { rows } = await sql.stockByIds.run(client, {
      ids: order.items.map((item) => item.productId),
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
    const { rows } = await sql.orderByIdempotencyKey.run(client, { userId, key });
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
      // Locked: of two concurrent cancels, the second waits and then sees CANCELLED.
      const { rows: found } = await sql.lockOrderStatus.run(client, { id, userId });
      const previousStatus = found[0]?.status;
      if (previousStatus === undefined) return { kind: 'not-found' };
      if (!from.includes(previousStatus))
        return { kind: 'not-cancellable', status: previousStatus };
      await sql.cancelOrder.run(client, { id, userId, from: [...from] });
      await this.restock(client, [id]);
      await publishInTransaction(
        client,
        orderCancelled({ orderId: id, userId, previousStatus, reason: 'user-requested' }),
      );
      const { rows } = await sql.orderById.run(client, { id });
      return { kind: 'cancelled', order: toOrder(rows[0]!) };
    });
  }

  /** Returns the orders' quantities to stock (see lockProductsOfOrders for why two statements). */
  private async restock(client: PoolClient, orderIds: string[]): Promise<void> {
    await sql.lockProductsOfOrders.run(client, { ids: orderIds });
    await sql.restockOrders.run(client, { ids: orderIds });
  }

  async knownUserStatus(userId: string): Promise<'active' | 'deleted' | undefined> {
    const { rows } = await sql.knownUser.run(this.pool, { userId });
    if (rows.length === 0) return undefined;
    return rows[0]!.deletedAt == null ? 'active' : 'deleted';
  }

  async recordUserRegistered(
    event: EventRef,
    userId: string,
    registeredAt: Date,
  ): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      const outcome = await handleOnce(client, event.consumer, event.eventId, () =>
        sql.recordRegisteredUser.run(client, { userId, registeredAt }),
      );
      return outcome.applied;
    });
  }

  /**
   * The user's row first (exclusively locked by the upsert): an order being placed for the user
   * holds it share-locked, so this waits for that order to commit and then cancels it too.
   */
  async recordUserDeleted(
    event: EventRef,
    userId: string,
    deletedAt: Date,
    from: readonly OrderStatus[],
  ): Promise<string[] | undefined> {
    return inTransaction(this.pool, async (client) => {
      const outcome = await handleOnce(client, event.consumer, event.eventId, async () => {
        await sql.recordDeletedUser.run(client, { userId, deletedAt });
        const { rows } = await sql.cancelOpenOrdersOfUser.run(client, {
          userId,
          from: [...from],
        });
        if (rows.length === 0) return [];
        await this.restock(
          client,
          rows.map((row) => row.id),
        );
        for (const row of rows) {
          await publishInTransaction(
            client,
            orderCancelled({
              orderId: row.id,
              userId,
              previousStatus: row.previousStatus,
              reason: 'user-deleted',
            }),
          );
        }
        return rows.map((row) => row.id);
      });
      return outcome.applied ? outcome.result : undefined;
    });
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
