import { coalesce } from '@repo/service-kit/coalesce';
import { throwIfDone } from '@repo/service-kit/deadline';
import { isUuid, requireUuids } from '@repo/service-kit/ids';
import {
  IDEMPOTENCY_KEY_TTL_MS,
  idempotencyKeyInProgress,
  idempotencyKeyReused,
  requestFingerprint,
} from '@repo/service-kit/idempotency';
import { DomainError, type FieldViolation } from '@repo/service-kit/errors';
import {
  decodePageToken,
  encodePageToken,
  normalizePageSize,
  parseCursorTime,
} from '@repo/service-kit/pagination';
import type { Order, Product } from './model';
import type { KeyedOrder, OrderRepository, UserDirectory } from './ports';
import { priceOrder } from './pricing';
import { CANCELLABLE, INITIAL_STATUS } from './status';
import { validateNewOrder, type NewOrderInput } from './validation';

/** A price change between pricing and reserving makes us re-price; this many times at most. */
const MAX_PLACE_ATTEMPTS = 3;

const userDoesNotExist = (userId: string) =>
  new DomainError('FAILED_PRECONDITION', `user ${userId} does not exist`);
const orderNotFound = (id: string) => new DomainError('NOT_FOUND', `order ${id} not found`);
const invalidToken = () =>
  DomainError.invalid([
    { field: 'page_token', description: 'is not a page token returned by this API' },
  ]);

/** The catalog's use cases. */
export class Catalog {
  /**
   * Product reads are hot and identical (many callers, few products): concurrent reads of one
   * product share a single query. Not a cache: nothing outlives the query, so stock is never stale.
   */
  private readonly findProduct: (id: string) => Promise<Product | undefined>;

  constructor(private readonly repository: OrderRepository) {
    this.findProduct = coalesce((id: string) => repository.findProduct(id));
  }

  async list(
    pageSize: number,
    pageToken: string,
  ): Promise<{ products: Product[]; nextPageToken: string }> {
    const limit = normalizePageSize(pageSize);
    const cursor = decodePageToken(pageToken, ['sku']);
    const rows = await this.repository.listProducts(cursor?.sku, limit + 1);
    const products = rows.slice(0, limit);
    const last = products.at(-1);
    return {
      products,
      nextPageToken: rows.length > limit && last ? encodePageToken({ sku: last.sku }) : '',
    };
  }

  /** A malformed id is INVALID_ARGUMENT (field `id`) and never reaches the database. */
  async get(id: string): Promise<Product> {
    const product = await this.findProduct(requireUuids({ id }).id);
    if (!product) throw new DomainError('NOT_FOUND', `product ${id} not found`);
    return product;
  }
}

/** The order use cases: placing, reading, listing and cancelling a user's orders. */
export class Orders {
  constructor(
    private readonly repository: OrderRepository,
    private readonly users: UserDirectory,
    /** How long an idempotency key is remembered (see @repo/service-kit/idempotency). */
    private readonly keyTtlMs: number = IDEMPOTENCY_KEY_TTL_MS,
  ) {}

  /**
   * Places an order. With an idempotency key: the same key and the same request return the order
   * the first call placed; the same key with another request is refused; the same key while the
   * first call is still running is ABORTED (retry shortly).
   */
  async create(input: NewOrderInput): Promise<Order> {
    const request = validateNewOrder(input);
    const key = request.idempotencyKey;
    // What the request asks for, independent of line order and of how lines were split.
    const fingerprint = requestFingerprint(
      request.lines
        .map((line) => [line.productId, line.quantity] as const)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    const replay = (found: KeyedOrder): Order => {
      if (found.requestFingerprint !== undefined && found.requestFingerprint !== fingerprint) {
        throw idempotencyKeyReused();
      }
      return found.order;
    };
    if (key) {
      // A retry of an order that was placed: return it, write nothing.
      const existing = await this.repository.findOrderByIdempotencyKey(
        request.userId,
        key,
        this.keyTtlMs,
      );
      if (existing) return replay(existing);
    }
    throwIfDone();
    if (!(await this.users.userExists(request.userId))) {
      throw userDoesNotExist(request.userId);
    }

    for (let attempt = 1; attempt <= MAX_PLACE_ATTEMPTS; attempt++) {
      throwIfDone();
      const products = new Map(
        (await this.repository.findProducts(request.lines.map((line) => line.productId))).map(
          (p) => [p.id, p],
        ),
      );
      const unknown: FieldViolation[] = request.lines
        .filter((line) => !products.has(line.productId))
        .map((line) => ({
          field: `items[${line.index}].product_id`,
          description: `product ${line.productId} does not exist`,
          reason: 'NOT_FOUND',
        }));
      if (unknown.length > 0) throw DomainError.invalid(unknown);
      for (const line of request.lines) {
        const product = products.get(line.productId)!;
        if (product.stock < line.quantity)
          throw notEnoughStock(product, line.quantity, product.stock);
      }

      const priced = priceOrder(request.lines, products);
      const result = await this.repository.placeOrder(
        {
          userId: request.userId,
          status: INITIAL_STATUS,
          idempotencyKey: key,
          requestFingerprint: key ? fingerprint : undefined,
          ...priced,
        },
        this.keyTtlMs,
      );
      switch (result.kind) {
        case 'created':
          return result.order;
        case 'duplicate-key':
          // Another call with the same key placed its order first (it has committed).
          return replay(result);
        case 'key-in-use':
          throw idempotencyKeyInProgress();
        case 'insufficient-stock': {
          const product = products.get(result.productId)!;
          const quantity = request.lines.find(
            (line) => line.productId === result.productId,
          )!.quantity;
          throw notEnoughStock(product, quantity, result.available);
        }
        case 'price-changed':
          continue;
        case 'user-deleted':
          throw userDoesNotExist(request.userId);
      }
    }
    throw new DomainError('ABORTED', 'the catalog changed while the order was being placed; retry');
  }

  /**
   * Another user's order is NOT_FOUND too: its existence is not revealed. A malformed id or user id
   * is INVALID_ARGUMENT (fields `id`, `user_id`) and never reaches the database.
   */
  async get(id: string, userId: string): Promise<Order> {
    const valid = requireUuids({ id, user_id: userId });
    const order = await this.repository.findOrder(valid.id, valid.user_id);
    if (!order) throw orderNotFound(id);
    return order;
  }

  async list(
    userId: string,
    pageSize: number,
    pageToken: string,
  ): Promise<{ orders: Order[]; nextPageToken: string }> {
    const limit = normalizePageSize(pageSize);
    const cursor = decodePageToken(pageToken, ['t', 'id']);
    let before: { createdAt: Date; id: string } | undefined;
    if (cursor) {
      const createdAt = parseCursorTime(cursor.t);
      if (Number.isNaN(createdAt.getTime()) || !isUuid(cursor.id)) throw invalidToken();
      before = { createdAt, id: cursor.id };
    }
    if (!isUuid(userId)) return { orders: [], nextPageToken: '' };
    const rows = await this.repository.listOrders(userId.toLowerCase(), before, limit + 1);
    const orders = rows.slice(0, limit);
    const last = orders.at(-1);
    const nextPageToken =
      rows.length > limit && last
        ? encodePageToken({ t: last.createdAt.toISOString(), id: last.id })
        : '';
    return { orders, nextPageToken };
  }

  /** Like `get`: NOT_FOUND for another user's order, INVALID_ARGUMENT for a malformed id. */
  async cancel(id: string, userId: string): Promise<Order> {
    const valid = requireUuids({ id, user_id: userId });
    const result = await this.repository.cancelOrder(valid.id, valid.user_id, CANCELLABLE);
    switch (result.kind) {
      case 'cancelled':
        return result.order;
      case 'not-found':
        throw orderNotFound(id);
      case 'not-cancellable':
        throw new DomainError(
          'FAILED_PRECONDITION',
          `order ${id} is ${result.status} and cannot be cancelled`,
        );
    }
  }
}

function notEnoughStock(product: Product, wanted: number, available: number): DomainError {
  return new DomainError(
    'FAILED_PRECONDITION',
    `not enough stock for product ${product.id} (${product.sku}): ${wanted} wanted, ${available} available`,
  );
}
