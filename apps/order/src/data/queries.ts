// Every SQL statement the order service runs on the pg pool directly, typed against the tables as
// schema.prisma declares them (generated/kysely) and compiled once (see @repo/database/sql).
import { sqlBuilder, statement, type Param } from '@repo/database/sql';
import { sql } from 'kysely';
import { jsonArrayFrom } from 'kysely/helpers/postgres';
import type { OrderStatus } from '../domain/model';
import type { DB } from './generated/kysely/types';

const db = sqlBuilder<DB>();
const now = sql<Date>`now()`;

/** Product columns as the domain names them. */
const PRODUCT_COLUMNS = [
  'id',
  'sku',
  'name',
  'price_cents as priceCents',
  'currency',
  'stock',
] as const;

export const productById = statement('product_by_id', (param: Param<{ id: string }>) =>
  selectProduct().where('id', '=', param('id')),
);

function selectProduct() {
  return db.selectFrom('products').select(PRODUCT_COLUMNS);
}

export const productsByIds = statement('products_by_ids', (param: Param<{ ids: string[] }>) =>
  selectProduct().where('id', '=', sql<string>`any(${param('ids')}::uuid[])`),
);

/**
 * A transaction-scoped advisory lock on (user, idempotency key): false when another transaction
 * holds it, without waiting.
 */
export const lockIdempotencyKey = statement(
  'lock_idempotency_key',
  (param: Param<{ userId: string; key: string }>) =>
    db.selectNoFrom(
      sql<boolean>`pg_try_advisory_xact_lock(hashtextextended(${param('userId')} || ':' || ${param('key')}, 0))`.as(
        'locked',
      ),
    ),
);

/** An order with its lines (sorted by sku), as the domain names them. */
function selectOrder() {
  return db
    .selectFrom('orders as o')
    .select((eb) => [
      'o.id',
      'o.user_id as userId',
      'o.status',
      'o.total_cents as totalCents',
      'o.currency',
      'o.idempotency_key as idempotencyKey',
      'o.request_fingerprint as requestFingerprint',
      'o.created_at as createdAt',
      'o.updated_at as updatedAt',
      jsonArrayFrom(
        eb
          .selectFrom('order_items as i')
          .select([
            'i.product_id as productId',
            'i.sku',
            'i.name',
            'i.unit_price_cents as unitPriceCents',
            'i.quantity',
          ])
          .whereRef('i.order_id', '=', 'o.id')
          .orderBy('i.sku'),
      ).as('items'),
    ]);
}

export const orderByIdempotencyKey = statement(
  'order_by_idempotency_key',
  (param: Param<{ userId: string; key: string }>) =>
    selectOrder()
      .where('o.user_id', '=', param('userId'))
      .where('o.idempotency_key', '=', param('key')),
);

export const orderById = statement('order_by_id', (param: Param<{ id: string }>) =>
  selectOrder().where('o.id', '=', param('id')),
);

export const releaseIdempotencyKey = statement(
  'release_idempotency_key',
  (param: Param<{ id: string }>) =>
    db.updateTable('orders').set({ idempotency_key: null }).where('id', '=', param('id')),
);

export const insertOrder = statement(
  'insert_order',
  (
    param: Param<{
      userId: string;
      status: OrderStatus;
      totalCents: string;
      currency: string;
      key: string | null;
      fingerprint: string | null;
    }>,
  ) =>
    db
      .insertInto('orders')
      .values({
        user_id: param('userId'),
        status: param('status'),
        total_cents: param('totalCents'),
        currency: param('currency'),
        idempotency_key: param('key'),
        request_fingerprint: param('fingerprint'),
      })
      .returning(['id', 'created_at as createdAt', 'updated_at as updatedAt']),
);

/** All lines of an order in one statement, from parallel arrays. */
export const insertOrderItems = statement(
  'insert_order_items',
  (
    param: Param<{
      orderId: string;
      productIds: string[];
      skus: string[];
      names: string[];
      prices: number[];
      quantities: number[];
    }>,
  ) =>
    db
      .insertInto('order_items')
      .columns(['order_id', 'product_id', 'sku', 'name', 'unit_price_cents', 'quantity'])
      .expression(
        sql`SELECT ${param('orderId')}::uuid, * FROM unnest(${param('productIds')}::uuid[], ${param('skus')}::text[], ${param('names')}::text[], ${param('prices')}::int[], ${param('quantities')}::int[])`,
      ),
);

/**
 * Takes each line's quantity from stock only if enough is left at the price the order was
 * computed with. Locks the rows in id order first (two orders sharing products cannot deadlock).
 * FOR NO KEY UPDATE, not FOR UPDATE: the order_items foreign key holds KEY SHARE locks on those
 * products, which FOR UPDATE would conflict with. Under READ COMMITTED PostgreSQL re-checks the
 * WHERE clause on the latest row version, so concurrent orders cannot oversell.
 */
export const reserveStock = statement(
  'reserve_stock',
  (param: Param<{ productIds: string[]; quantities: number[]; prices: number[] }>) =>
    db
      .with('locked', (qb) =>
        qb
          .selectFrom('products')
          .select('id')
          .where('id', '=', sql<string>`any(${param('productIds')}::uuid[])`)
          .orderBy('id')
          .forNoKeyUpdate(),
      )
      .updateTable('products as p')
      .from(
        sql<{
          id: string;
          quantity: number;
          price: number;
        }>`(SELECT * FROM unnest(${param('productIds')}::uuid[], ${param('quantities')}::int[], ${param('prices')}::int[]) AS t(id, quantity, price))`.as(
          'w',
        ),
      )
      .set((eb) => ({
        stock: eb('p.stock', '-', eb.ref('w.quantity')),
        updated_at: now,
      }))
      .whereRef('p.id', '=', 'w.id')
      .where('p.id', 'in', (eb) => eb.selectFrom('locked').select('locked.id'))
      .whereRef('p.stock', '>=', 'w.quantity')
      .whereRef('p.price_cents', '=', 'w.price'),
);

export const stockByIds = statement('stock_by_ids', (param: Param<{ ids: string[] }>) =>
  db
    .selectFrom('products')
    .select(['id', 'stock'])
    .where('id', '=', sql<string>`any(${param('ids')}::uuid[])`),
);

/** Conditional update: of two concurrent cancels, exactly one changes the row. */
export const cancelOrder = statement(
  'cancel_order',
  (param: Param<{ id: string; userId: string; from: OrderStatus[] }>) =>
    db
      .updateTable('orders')
      .set({ status: 'CANCELLED', updated_at: now })
      .where('id', '=', param('id'))
      .where('user_id', '=', param('userId'))
      .where('status', '=', sql<OrderStatus>`any(${param('from')}::order_status[])`),
);

/**
 * Locks, in id order, the products of these orders (reserveStock takes its locks in the same order,
 * so the two cannot deadlock). A statement of its own, before restockOrders: when one statement
 * both locks rows in a CTE and updates them, a row updated by another transaction in between has
 * to be locked again at its new version, and queueing for that lock can deadlock against other
 * waiters (seen under concurrent orders and deletions in test/events.test.ts).
 */
export const lockProductsOfOrders = statement(
  'lock_products_of_orders',
  (param: Param<{ ids: string[] }>) =>
    db
      .selectFrom('products')
      .select('id')
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('order_items')
          .select('product_id')
          .where('order_id', '=', sql<string>`any(${param('ids')}::uuid[])`),
      )
      .orderBy('id')
      .forNoKeyUpdate(),
);

/**
 * Returns cancelled orders' quantities to stock, summed per product (one user's deletion cancels
 * several orders at once). Run after lockProductsOfOrders, in the same transaction.
 */
export const restockOrders = statement('restock_orders', (param: Param<{ ids: string[] }>) =>
  db
    .with('returned', (qb) =>
      qb
        .selectFrom('order_items')
        .select(['product_id', (eb) => eb.fn.sum<number>('quantity').as('quantity')])
        .where('order_id', '=', sql<string>`any(${param('ids')}::uuid[])`)
        .groupBy('product_id'),
    )
    .updateTable('products as p')
    .from('returned as r')
    .set((eb) => ({ stock: eb('p.stock', '+', eb.ref('r.quantity')), updated_at: now }))
    .whereRef('p.id', '=', 'r.product_id'),
);

/**
 * Cancels every order of the user still in one of `from`, returning each one's previous status
 * (locked first, so the status returned is the one this statement changed).
 */
export const cancelOpenOrdersOfUser = statement(
  'cancel_open_orders_of_user',
  (param: Param<{ userId: string; from: OrderStatus[] }>) =>
    db
      .with('open', (qb) =>
        qb
          .selectFrom('orders')
          .select(['id', 'status'])
          .where('user_id', '=', param('userId'))
          .where('status', '=', sql<OrderStatus>`any(${param('from')}::order_status[])`)
          .orderBy('id')
          .forNoKeyUpdate(),
      )
      .updateTable('orders as o')
      .from('open')
      .set({ status: 'CANCELLED', updated_at: now })
      .whereRef('o.id', '=', 'open.id')
      .returning(['o.id', 'open.status as previousStatus']),
);

/**
 * The projection row of a user, share-locked until the transaction ends: a UserDeleted being
 * applied at the same moment waits for the order to commit (and then cancels it), or the order
 * sees the deletion.
 */
export const lockKnownUser = statement('lock_known_user', (param: Param<{ userId: string }>) =>
  db
    .selectFrom('known_users')
    .select('deleted_at as deletedAt')
    .where('user_id', '=', param('userId'))
    .forShare(),
);

/** The projection row of a user, without a lock (UserDirectory's first look). */
export const knownUser = statement('known_user', (param: Param<{ userId: string }>) =>
  db
    .selectFrom('known_users')
    .select('deleted_at as deletedAt')
    .where('user_id', '=', param('userId')),
);

/** Remembers a user the user service confirmed (GetUser) before its UserRegistered arrived. */
export const rememberUser = statement('remember_user', (param: Param<{ userId: string }>) =>
  db
    .insertInto('known_users')
    .values({ user_id: param('userId') })
    .onConflict((oc) => oc.column('user_id').doNothing()),
);

/** UserRegistered: the user exists from `registeredAt` (a deletion already applied stays). */
export const recordRegisteredUser = statement(
  'record_registered_user',
  (param: Param<{ userId: string; registeredAt: Date }>) =>
    db
      .insertInto('known_users')
      .values({ user_id: param('userId'), registered_at: param('registeredAt') })
      .onConflict((oc) =>
        oc.column('user_id').doUpdateSet({ registered_at: param('registeredAt'), updated_at: now }),
      ),
);

/** UserDeleted: orders for the user are refused from now on. */
export const recordDeletedUser = statement(
  'record_deleted_user',
  (param: Param<{ userId: string; deletedAt: Date }>) =>
    db
      .insertInto('known_users')
      .values({ user_id: param('userId'), deleted_at: param('deletedAt') })
      .onConflict((oc) =>
        oc.column('user_id').doUpdateSet({ deleted_at: param('deletedAt'), updated_at: now }),
      ),
);

/** The order's status, locked until the transaction ends (cancelling decides on it). */
export const lockOrderStatus = statement(
  'lock_order_status',
  (param: Param<{ id: string; userId: string }>) =>
    db
      .selectFrom('orders')
      .select('status')
      .where('id', '=', param('id'))
      .where('user_id', '=', param('userId'))
      .forNoKeyUpdate(),
);
