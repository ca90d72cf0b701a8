import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import { OrderStatus } from '@repo/contracts/order/v1';
import { Client } from 'pg';
import { createTestDatabase, startTcpProxy, type TestDatabase } from '@repo/database/testing';
import { fieldViolationsOf } from '@repo/service-kit/errors';
import { checkHealth } from '@repo/service-kit/health-client';
import { eventually, rejectionOf } from '@repo/service-kit/testing';
import { StandInUserService, startOrderService, status, type RunningOrderService } from './harness';

const KEYBOARD = '0b7d3e4a-1c2f-4a5b-8c6d-000000000001'; // seeded: 8900 EUR
const MOUSE = '0b7d3e4a-1c2f-4a5b-8c6d-000000000002'; // seeded: 2900 EUR
const UNKNOWN = '00000000-0000-4000-8000-000000000000';

const failure = (promise: Promise<unknown>) => rejectionOf<ServiceError>(promise);
const MALFORMED_ID = { field: 'id', description: 'must be a UUID', reason: 'INVALID_FORMAT' };
const MALFORMED_USER_ID = { ...MALFORMED_ID, field: 'user_id' };

describe('order.v1.OrderService over gRPC', () => {
  let database: TestDatabase;
  let users: StandInUserService;
  let service: RunningOrderService;

  const newUser = () => {
    const id = randomUUID();
    users.knownUsers.add(id);
    return id;
  };
  const newProduct = async (stock: number, priceCents = 1000) =>
    service.prisma.product.create({
      data: {
        sku: `T-${randomUUID().slice(0, 8)}`,
        name: 'Test product',
        priceCents,
        currency: 'EUR',
        stock,
      },
    });
  const stockOf = async (id: string) =>
    (await service.prisma.product.findUniqueOrThrow({ where: { id } })).stock;

  beforeAll(async () => {
    database = await createTestDatabase();
    users = new StandInUserService();
    const userAddress = await users.start();
    service = await startOrderService(database.url, userAddress);
  });

  afterAll(async () => {
    await service.stop();
    await users.stop();
    await database.drop();
  });

  describe('the catalog', () => {
    it('seeds at least 10 products and pages through them by sku with opaque tokens', async () => {
      const skus: string[] = [];
      let pageToken = '';
      let pages = 0;
      do {
        const page = await service.client.listProducts({ pageSize: 5, pageToken });
        skus.push(...page.products.map((product) => product.sku));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken);
      expect(skus.length).toBeGreaterThanOrEqual(10);
      expect(pages).toBeGreaterThan(2);
      expect([...skus].sort()).toEqual(skus);
      expect(new Set(skus).size).toBe(skus.length);
    });

    it('gets a product with its price in integer cents', async () => {
      const { product } = await service.client.getProduct({ id: KEYBOARD });
      expect(product).toMatchObject({
        id: KEYBOARD,
        sku: 'KB-001',
        priceCents: 8900,
        currency: 'EUR',
      });
    });

    it('answers NOT_FOUND for an unknown product id', async () => {
      expect((await failure(service.client.getProduct({ id: UNKNOWN }))).code).toBe(
        status.NOT_FOUND,
      );
    });

    it.each(['not-a-uuid', '', "1' OR '1'='1"])(
      'answers INVALID_ARGUMENT naming the field for the malformed product id %j',
      async (id) => {
        const error = await failure(service.client.getProduct({ id }));
        expect(error.code).toBe(status.INVALID_ARGUMENT);
        expect(fieldViolationsOf(error)).toEqual([MALFORMED_ID]);
      },
    );

    it('answers buf curl by method name through server reflection, as the README shows', async () => {
      // buf comes with @repo/contracts (it generates the code from proto/); reflection is the only
      // schema buf gets here.
      const buf = require.resolve('@bufbuild/buf/bin/buf', {
        paths: [dirname(require.resolve('@repo/contracts/descriptor'))],
      });
      const curl = (...args: string[]) =>
        promisify(execFile)(
          buf,
          ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args],
          {
            timeout: 20_000,
          },
        );
      const url = `http://${service.address}`;
      const { stdout } = await curl(
        '-d',
        '{"page_size": 2}',
        `${url}/order.v1.OrderService/ListProducts`,
      );
      const page = JSON.parse(stdout) as { products: { sku: string }[]; nextPageToken: string };
      expect(page.products).toHaveLength(2);
      expect(page.nextPageToken).not.toBe('');
      const methods = (await curl('--list-methods', url)).stdout.trim().split('\n');
      expect(methods).toContain('order.v1.OrderService/GetProduct');
    });

    it('rejects a forged page token', async () => {
      expect(
        (await failure(service.client.listProducts({ pageSize: 5, pageToken: 'eyJza3UiOjF9' })))
          .code,
      ).toBe(status.INVALID_ARGUMENT);
    });
  });

  describe('CreateOrder', () => {
    it('prices from the catalog, computes the total, reserves stock and confirms', async () => {
      const userId = newUser();
      const before = await stockOf(KEYBOARD);
      const { order } = await service.client.createOrder({
        userId,
        items: [
          { productId: KEYBOARD, quantity: 2 },
          { productId: MOUSE, quantity: 1 },
        ],
        idempotencyKey: '',
      });
      expect(order).toMatchObject({
        userId,
        status: OrderStatus.ORDER_STATUS_CONFIRMED,
        totalCents: 2 * 8900 + 2900,
        currency: 'EUR',
      });
      expect(order!.items).toEqual(
        expect.arrayContaining([
          {
            productId: KEYBOARD,
            sku: 'KB-001',
            name: 'Mechanical keyboard',
            unitPriceCents: 8900,
            quantity: 2,
          },
          {
            productId: MOUSE,
            sku: 'MS-002',
            name: 'Wireless mouse',
            unitPriceCents: 2900,
            quantity: 1,
          },
        ]),
      );
      expect(await stockOf(KEYBOARD)).toBe(before - 2);
    });

    it('merges duplicate product lines', async () => {
      const { order } = await service.client.createOrder({
        userId: newUser(),
        items: [
          { productId: MOUSE, quantity: 1 },
          { productId: MOUSE, quantity: 2 },
        ],
        idempotencyKey: '',
      });
      expect(order!.items).toEqual([expect.objectContaining({ productId: MOUSE, quantity: 3 })]);
      expect(order!.totalCents).toBe(3 * 2900);
    });

    it('answers FAILED_PRECONDITION for a user the user service does not know', async () => {
      const error = await failure(
        service.client.createOrder({
          userId: UNKNOWN,
          items: [{ productId: MOUSE, quantity: 1 }],
          idempotencyKey: '',
        }),
      );
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(error.details).toContain(UNKNOWN);
    });

    it.each([
      ['a zero quantity', [{ productId: MOUSE, quantity: 0 }], 'items[0].quantity'],
      ['a quantity over 1000', [{ productId: MOUSE, quantity: 1001 }], 'items[0].quantity'],
      ['no lines', [], 'items'],
      ['51 lines', Array.from({ length: 51 }, () => ({ productId: MOUSE, quantity: 1 })), 'items'],
      ['a malformed product id', [{ productId: 'abc', quantity: 1 }], 'items[0].product_id'],
    ])('answers INVALID_ARGUMENT for %s', async (_label, items, field) => {
      const error = await failure(
        service.client.createOrder({ userId: newUser(), items, idempotencyKey: '' }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error).map((v) => v.field)).toContain(field);
    });

    it('answers INVALID_ARGUMENT naming an unknown product', async () => {
      const error = await failure(
        service.client.createOrder({
          userId: newUser(),
          items: [
            { productId: MOUSE, quantity: 1 },
            { productId: UNKNOWN, quantity: 1 },
          ],
          idempotencyKey: '',
        }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error)).toEqual([
        expect.objectContaining({
          field: 'items[1].product_id',
          description: `product ${UNKNOWN} does not exist`,
        }),
      ]);
    });

    it('answers FAILED_PRECONDITION naming the product when stock is short, and writes nothing', async () => {
      const userId = newUser();
      const scarce = await newProduct(2);
      const mouseBefore = await stockOf(MOUSE);
      const error = await failure(
        service.client.createOrder({
          userId,
          items: [
            { productId: MOUSE, quantity: 1 },
            { productId: scarce.id, quantity: 3 },
          ],
          idempotencyKey: '',
        }),
      );
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(error.details).toContain(scarce.id);
      expect(error.details).toContain(scarce.sku);
      expect(await stockOf(MOUSE)).toBe(mouseBefore);
      expect(await stockOf(scarce.id)).toBe(2);
      expect(
        (await service.client.listOrders({ userId, pageSize: 10, pageToken: '' })).orders,
      ).toEqual([]);
    });

    it('returns the first order for a repeated idempotency key and writes nothing new', async () => {
      const userId = newUser();
      const before = await stockOf(MOUSE);
      const request = {
        userId,
        items: [{ productId: MOUSE, quantity: 1 }],
        idempotencyKey: 'checkout-1',
      };
      const first = await service.client.createOrder(request);
      const second = await service.client.createOrder(request);
      expect(second.order).toEqual(first.order);
      expect(await stockOf(MOUSE)).toBe(before - 1);
      // The key is per user: another user's identical key is another order.
      const other = await service.client.createOrder({ ...request, userId: newUser() });
      expect(other.order!.id).not.toBe(first.order!.id);
    });

    it('creates one order when 20 calls race with one idempotency key: the others replay it or are told it is in progress', async () => {
      const userId = newUser();
      const product = await newProduct(100);
      const request = {
        userId,
        items: [{ productId: product.id, quantity: 2 }],
        idempotencyKey: randomUUID(),
      };
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, () => service.client.createOrder(request)),
      );
      // One line per outcome, so a failure shows what came back.
      const outcomes = results.map((result) =>
        result.status === 'fulfilled'
          ? `OK ${result.value.order!.id}`
          : status[(result.reason as ServiceError).code],
      );
      const ids = new Set(outcomes.filter((outcome) => outcome.startsWith('OK ')));
      expect({ ids: ids.size, others: outcomes.filter((o) => !o.startsWith('OK ')) }).toEqual({
        ids: 1,
        others: outcomes.filter((o) => o === 'ABORTED'),
      });
      expect(await service.prisma.order.count({ where: { userId } })).toBe(1);
      expect(await stockOf(product.id)).toBe(98);
      // Once the first call has finished, the key replays its order.
      const replay = await service.client.createOrder(request);
      expect(`OK ${replay.order!.id}`).toBe([...ids][0]);
    });

    it('never oversells: 30 parallel orders of 1 unit against stock 10 give exactly 10 orders', async () => {
      const product = await newProduct(10);
      const results = await Promise.allSettled(
        Array.from({ length: 30 }, () =>
          service.client.createOrder({
            userId: newUser(),
            items: [{ productId: product.id, quantity: 1 }],
            idempotencyKey: '',
          }),
        ),
      );
      const created = results.filter((result) => result.status === 'fulfilled');
      const refused = results.filter(
        (result): result is PromiseRejectedResult => result.status === 'rejected',
      );
      expect(created).toHaveLength(10);
      expect(refused.map((result) => (result.reason as ServiceError).code)).toEqual(
        Array.from({ length: 20 }, () => status.FAILED_PRECONDITION),
      );
      expect(await stockOf(product.id)).toBe(0);
      expect(await service.prisma.orderItem.count({ where: { productId: product.id } })).toBe(10);
    });
  });

  describe('reading and cancelling orders', () => {
    it("reads an order by its owner only: another user's order is NOT_FOUND", async () => {
      const owner = newUser();
      const { order } = await service.client.createOrder({
        userId: owner,
        items: [{ productId: MOUSE, quantity: 1 }],
        idempotencyKey: '',
      });
      expect((await service.client.getOrder({ id: order!.id, userId: owner })).order).toEqual(
        order,
      );
      const error = await failure(service.client.getOrder({ id: order!.id, userId: newUser() }));
      expect(error.code).toBe(status.NOT_FOUND);
    });

    it('answers INVALID_ARGUMENT naming each malformed id when reading or cancelling', async () => {
      const owner = newUser();
      for (const call of [
        (id: string, userId: string) => service.client.getOrder({ id, userId }),
        (id: string, userId: string) => service.client.cancelOrder({ id, userId }),
      ]) {
        for (const [id, userId, violations] of [
          ['junk', owner, [MALFORMED_ID]],
          [UNKNOWN, 'junk', [MALFORMED_USER_ID]],
          ['', '', [MALFORMED_ID, MALFORMED_USER_ID]],
        ] as const) {
          const error = await failure(call(id, userId));
          expect(error.code).toBe(status.INVALID_ARGUMENT);
          expect(fieldViolationsOf(error)).toEqual(violations);
        }
        // A well-formed id that names no order of this user is still NOT_FOUND.
        expect((await failure(call(UNKNOWN, owner))).code).toBe(status.NOT_FOUND);
      }
    });

    it('lists a user’s orders newest first, with cursors', async () => {
      const userId = newUser();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const { order } = await service.client.createOrder({
          userId,
          items: [{ productId: MOUSE, quantity: 1 }],
          idempotencyKey: '',
        });
        ids.push(order!.id);
      }
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await service.client.listOrders({ userId, pageSize: 2, pageToken });
        seen.push(...page.orders.map((order) => order.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(seen).toEqual([...ids].reverse());
      const other = await service.client.listOrders({
        userId: newUser(),
        pageSize: 0,
        pageToken: '',
      });
      expect(other.orders).toEqual([]);
    });

    it('cancels once, returning the stock; a second cancel is FAILED_PRECONDITION', async () => {
      const userId = newUser();
      const product = await newProduct(5);
      const { order } = await service.client.createOrder({
        userId,
        items: [{ productId: product.id, quantity: 3 }],
        idempotencyKey: '',
      });
      expect(await stockOf(product.id)).toBe(2);
      const { order: cancelled } = await service.client.cancelOrder({ id: order!.id, userId });
      expect(cancelled!.status).toBe(OrderStatus.ORDER_STATUS_CANCELLED);
      expect(await stockOf(product.id)).toBe(5);
      const error = await failure(service.client.cancelOrder({ id: order!.id, userId }));
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(await stockOf(product.id)).toBe(5);
    });

    it('returns the stock once when two cancels race', async () => {
      const userId = newUser();
      const product = await newProduct(5);
      const { order } = await service.client.createOrder({
        userId,
        items: [{ productId: product.id, quantity: 4 }],
        idempotencyKey: '',
      });
      const results = await Promise.allSettled(
        [1, 2, 3].map(() => service.client.cancelOrder({ id: order!.id, userId })),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      expect(await stockOf(product.id)).toBe(5);
    });

    it("refuses to cancel another user's order (NOT_FOUND)", async () => {
      const { order } = await service.client.createOrder({
        userId: newUser(),
        items: [{ productId: MOUSE, quantity: 1 }],
        idempotencyKey: '',
      });
      expect(
        (await failure(service.client.cancelOrder({ id: order!.id, userId: newUser() }))).code,
      ).toBe(status.NOT_FOUND);
    });
  });
});

describe('when the user service is slow or down', () => {
  let database: TestDatabase;
  let users: StandInUserService;
  let service: RunningOrderService;

  beforeAll(async () => {
    database = await createTestDatabase();
    users = new StandInUserService();
    service = await startOrderService(database.url, await users.start(), 500);
  });

  afterAll(async () => {
    await service.stop();
    await users.stop();
    await database.drop();
  });

  const order = (userId: string) =>
    service.client.createOrder({
      userId,
      items: [{ productId: MOUSE, quantity: 1 }],
      idempotencyKey: '',
    });

  it('answers UNAVAILABLE within the deadline when the user service is slow', async () => {
    const userId = randomUUID();
    users.knownUsers.add(userId);
    users.delayMs = 3_000;
    const started = Date.now();
    const error = await failure(order(userId));
    users.delayMs = 0;
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(2_500); // the 500 ms deadline, plus slack for a loaded CI machine
  });

  it('answers UNAVAILABLE fast when the user service is down, stays SERVING, and recovers', async () => {
    const userId = randomUUID();
    users.knownUsers.add(userId);
    const port = users.port;
    await users.stop();
    const started = Date.now();
    const error = await failure(order(userId));
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(2_500); // the 500 ms deadline, plus slack for a loaded CI machine
    // Its own health is about its own database: still SERVING, and the catalog still answers.
    expect(await checkHealth(service.address, 'order.v1.OrderService')).toBe('SERVING');
    await expect(service.client.getProduct({ id: MOUSE })).resolves.toMatchObject({
      product: { id: MOUSE },
    });

    await users.start(port);
    const recovered = await eventually(
      () => order(userId).then((response) => response.order!.status),
      OrderStatus.ORDER_STATUS_CONFIRMED,
    );
    expect(recovered).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
  });
});

describe('health follows the database', () => {
  it('reports NOT_SERVING while PostgreSQL is unreachable and SERVING when it returns', async () => {
    const database = await createTestDatabase();
    const proxy = await startTcpProxy(database.url);
    const users = new StandInUserService();
    const service = await startOrderService(proxy.url, await users.start());
    try {
      expect(await checkHealth(service.address, 'order.v1.OrderService')).toBe('SERVING');
      proxy.block();
      expect(
        await eventually(
          () => checkHealth(service.address, 'order.v1.OrderService'),
          'NOT_SERVING',
        ),
      ).toBe('NOT_SERVING');
      expect(
        (await failure(service.client.getProduct({ id: MOUSE }, { deadlineMs: 5_000 }))).code,
      ).toBe(status.UNAVAILABLE);
      proxy.unblock();
      expect(
        await eventually(() => checkHealth(service.address, 'order.v1.OrderService'), 'SERVING'),
      ).toBe('SERVING');
    } finally {
      await service.stop();
      await users.stop();
      await proxy.close();
      await database.drop();
    }
  });
  it('fails a call whose connection is lost mid-transaction with UNAVAILABLE, and lives on', async () => {
    const database = await createTestDatabase();
    const proxy = await startTcpProxy(database.url);
    const users = new StandInUserService();
    const service = await startOrderService(proxy.url, await users.start());
    // Holds MOUSE's row lock from outside the proxy, so the order's transaction waits on it.
    const locker = new Client({ connectionString: database.url });
    await locker.connect();
    try {
      const userId = randomUUID();
      users.knownUsers.add(userId);
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM products WHERE id = $1 FOR UPDATE', [MOUSE]);
      const placing = failure(
        service.client.createOrder({
          userId,
          items: [{ productId: MOUSE, quantity: 1 }],
          idempotencyKey: '',
        }),
      );
      // The service's transaction is checked out, its statement waiting for the lock.
      const waiting = await eventually(async () => {
        const { rows } = await locker.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        );
        return rows[0]!.n;
      }, 1);
      expect(waiting).toBe(1);
      proxy.block(); // the database "restarts" under it
      expect((await placing).code).toBe(status.UNAVAILABLE);
      await locker.query('ROLLBACK');
      proxy.unblock();
      // Still up (the lost connection did not take the process down), and it connects afresh.
      const placed = await eventually(
        () =>
          service.client
            .createOrder({ userId, items: [{ productId: MOUSE, quantity: 1 }], idempotencyKey: '' })
            .then((response) => response.order!.status),
        OrderStatus.ORDER_STATUS_CONFIRMED,
      );
      expect(placed).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    } finally {
      await locker.end();
      await service.stop();
      await users.stop();
      await proxy.close();
      await database.drop();
    }
  });
});
