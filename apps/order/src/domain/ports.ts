import type { Order, OrderStatus, Product } from './model';

/** Keyset position in a user's orders (newest first). */
export interface OrderCursor {
  createdAt: Date;
  id: string;
}

/** An order before it is stored: the store gives it its id and timestamps. */
export type NewOrder = Omit<Order, 'id' | 'createdAt' | 'updatedAt'> & {
  /** Fingerprint of the request, stored with the idempotency key (see @repo/service-kit/idempotency). */
  requestFingerprint?: string | undefined;
};

/** An order found by its idempotency key, with the fingerprint of the request that placed it. */
export interface KeyedOrder {
  order: Order;
  /** Undefined for orders placed before fingerprints were stored: they match any request. */
  requestFingerprint: string | undefined;
}

export type PlaceOrderResult =
  | { kind: 'created'; order: Order }
  /** The user already has a live order with this idempotency key (possibly placed a moment ago). */
  | ({ kind: 'duplicate-key' } & KeyedOrder)
  /** Another call with this idempotency key is placing its order right now. */
  | { kind: 'key-in-use' }
  /** Nothing was written: this product has fewer units than asked. */
  | { kind: 'insufficient-stock'; productId: string; available: number }
  /** Nothing was written: a price changed between pricing and reserving. */
  | { kind: 'price-changed' }
  /** Nothing was written: the user's deletion (UserDeleted) was applied first. */
  | { kind: 'user-deleted' };

export type CancelOrderResult =
  | { kind: 'cancelled'; order: Order }
  | { kind: 'not-found' }
  | { kind: 'not-cancellable'; status: OrderStatus };

/** What the domain needs from storage. Implemented with Prisma in src/data/. */
export interface OrderRepository {
  /** Products ordered by sku, after `afterSku`. */
  listProducts(afterSku: string | undefined, limit: number): Promise<Product[]>;
  findProduct(id: string): Promise<Product | undefined>;
  findProducts(ids: readonly string[]): Promise<Product[]>;
  /**
   * In one transaction: writes the order with its items and takes each line's quantity from stock,
   * only if every product still has enough units at the price the order was computed with. With an
   * idempotency key, holds the key for the transaction (a concurrent call with it gets
   * `key-in-use`), returns the live order that already has it, and releases an expired one.
   */
  placeOrder(order: NewOrder, keyTtlMs: number): Promise<PlaceOrderResult>;
  /** The order placed with this key within the last `ttlMs`, if any. */
  findOrderByIdempotencyKey(
    userId: string,
    key: string,
    ttlMs: number,
  ): Promise<KeyedOrder | undefined>;
  /** The order, only if it belongs to `userId`. */
  findOrder(id: string, userId: string): Promise<Order | undefined>;
  listOrders(userId: string, before: OrderCursor | undefined, limit: number): Promise<Order[]>;
  /**
   * In one transaction: marks the order CANCELLED (from one of `from`), returns its stock, and
   * publishes OrderCancelled.
   */
  cancelOrder(id: string, userId: string, from: readonly OrderStatus[]): Promise<CancelOrderResult>;
  /** What the projection of users says about one (see KnownUsers); undefined: never heard of. */
  knownUserStatus(userId: string): Promise<'active' | 'deleted' | undefined>;
  /**
   * Applies UserRegistered once (the inbox records `event` in the same transaction): the user is
   * known from `registeredAt`. False when this event was applied before.
   */
  recordUserRegistered(event: EventRef, userId: string, registeredAt: Date): Promise<boolean>;
  /**
   * Applies UserDeleted once, in one transaction: the user is marked deleted, every order of theirs
   * in one of `from` is cancelled with its stock returned and an OrderCancelled published.
   * Undefined when this event was applied before; else the orders cancelled.
   */
  recordUserDeleted(
    event: EventRef,
    userId: string,
    deletedAt: Date,
    from: readonly OrderStatus[],
  ): Promise<string[] | undefined>;
  ping(): Promise<void>;
}

/** An event being applied, for the inbox: which consumer, which event. */
export interface EventRef {
  consumer: string;
  eventId: string;
}

/** What the order service needs to know about users; asked of the user service over gRPC. */
export interface UserDirectory {
  /**
   * True when the user exists, false when it does not. Throws DomainError UNAVAILABLE when the
   * user service cannot answer in time: never hangs, never guesses.
   */
  userExists(userId: string): Promise<boolean>;
}
