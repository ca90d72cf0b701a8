import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  OrderServiceService,
  OrderStatus,
  type OrderServiceServer,
} from '@repo/contracts/order/v1';
import { fakeUserServer } from './fake-user-service';
import { createGrpcServer, unaryService, type GrpcServer } from '../src/grpc-server';
import { createLogger } from '../src/logger';

// Server reflection as a real, independent client uses it: `buf curl` knows nothing of our protos,
// asks the server for the file that declares a service, then for every file that one imports
// (google/protobuf/timestamp.proto here), and builds its schema from the answers.
const logger = createLogger({ name: 'test', level: 'silent', pretty: false });
const BUF = require.resolve('@bufbuild/buf/bin/buf');
const CREATED = new Date('2026-01-02T03:04:05.000Z');

async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(
    BUF,
    ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args],
    { timeout: 20_000 },
  );
  return stdout;
}

const notUsed = () => Promise.reject(new Error('not used by this test'));

/** A server per service, as in production: each one reflects only its own service and health. */
function userServer(): GrpcServer {
  return fakeUserServer({
    getUser: async ({ id }) => ({
      user: { id, email: 'ada@example.com', name: 'Ada', createTime: CREATED },
    }),
  });
}

function orderServer(): GrpcServer {
  return createGrpcServer({
    logger,
    services: [
      {
        name: 'order.v1.OrderService',
        definition: OrderServiceService,
        implementation: unaryService<OrderServiceServer>(
          'order.v1.OrderService',
          {
            listProducts: async ({ pageSize }) => ({
              products: Array.from({ length: pageSize }, (_, i) => ({
                id: `p${i}`,
                sku: `SKU-${i}`,
                name: `Product ${i}`,
                priceCents: 100 * (i + 1),
                currency: 'EUR',
                stock: 3,
              })),
              nextPageToken: 'next',
            }),
            getOrder: async ({ id }) => ({
              order: {
                id,
                userId: 'u1',
                items: [],
                totalCents: 0,
                currency: 'EUR',
                status: OrderStatus.ORDER_STATUS_PENDING,
                createTime: CREATED,
                updateTime: CREATED,
              },
            }),
            getProduct: notUsed,
            createOrder: notUsed,
            listOrders: notUsed,
            cancelOrder: notUsed,
          },
          { logger },
        ),
      },
    ],
  });
}

describe('server reflection, through buf curl', () => {
  const servers: GrpcServer[] = [];
  let userUrl: string;
  let orderUrl: string;

  beforeAll(async () => {
    const start = async (server: GrpcServer) => {
      servers.push(server);
      return `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
    };
    userUrl = await start(userServer());
    orderUrl = await start(orderServer());
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.shutdown(1000)));
  });

  it.each([
    [
      'user',
      'user.v1.UserService',
      [
        'BatchGetUsers',
        'CreateUser',
        'DeleteUser',
        'GetUser',
        'ListUsers',
        'UpdateUser',
        'VerifyCredentials',
      ],
    ],
    [
      'order',
      'order.v1.OrderService',
      ['CancelOrder', 'CreateOrder', 'GetOrder', 'GetProduct', 'ListOrders', 'ListProducts'],
    ],
  ])('lists the methods of the %s service', async (which, service, methods) => {
    const url = which === 'user' ? userUrl : orderUrl;
    const stdout = await bufCurl('--list-methods', url);
    const listed = stdout.trim().split('\n').sort();
    expect(listed.filter((method) => method.startsWith(`${service}/`))).toEqual(
      methods.map((method) => `${service}/${method}`),
    );
    // The health service is reflected too (grpc.health.v1.Health/Check and Watch).
    expect(listed).toContain('grpc.health.v1.Health/Check');
  });

  it('lists only the services the server serves', async () => {
    const stdout = await bufCurl('--list-services', orderUrl);
    expect(stdout.trim().split('\n').sort()).toEqual([
      'grpc.health.v1.Health',
      'order.v1.OrderService',
    ]);
  });

  it('calls ListProducts by name, as the README shows', async () => {
    const stdout = await bufCurl(
      '-d',
      '{"page_size": 2}',
      `${orderUrl}/order.v1.OrderService/ListProducts`,
    );
    const body = JSON.parse(stdout) as { products: { sku: string }[]; nextPageToken: string };
    expect(body.products.map((product) => product.sku)).toEqual(['SKU-0', 'SKU-1']);
    expect(body.nextPageToken).toBe('next');
  });

  it('reads messages that use google.protobuf.Timestamp (an imported file)', async () => {
    const order = JSON.parse(
      await bufCurl('-d', '{"id": "o1"}', `${orderUrl}/order.v1.OrderService/GetOrder`),
    ) as { order: { id: string; status: string; createTime: string } };
    expect(order.order).toMatchObject({
      id: 'o1',
      status: 'ORDER_STATUS_PENDING',
      createTime: '2026-01-02T03:04:05Z',
    });
    const user = JSON.parse(
      await bufCurl('-d', '{"id": "u1"}', `${userUrl}/user.v1.UserService/GetUser`),
    ) as { user: { id: string; createTime: string } };
    expect(user.user).toMatchObject({ id: 'u1', createTime: '2026-01-02T03:04:05Z' });
  });

  it('serves the health service it lists', async () => {
    const stdout = await bufCurl('-d', '{}', `${userUrl}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(stdout)).toEqual({ status: 'NOT_SERVING' });
  });
});
