// B1, backend half: a minimal grpc-js server for OrderService.GetProduct that reads one row by
// primary key with `pg` — no framework, no ORM, no validation layer. The naive service.
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import {
  OrderServiceService,
  type GetProductRequest,
  type GetProductResponse,
} from '@repo/contracts/order/v1';
import { Pool } from 'pg';

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const server = new Server();

server.addService(OrderServiceService, {
  getProduct(
    call: ServerUnaryCall<GetProductRequest, GetProductResponse>,
    callback: sendUnaryData<GetProductResponse>,
  ) {
    pool
      .query<{
        id: string;
        sku: string;
        name: string;
        price_cents: number;
        currency: string;
        stock: number;
      }>('SELECT id, sku, name, price_cents, currency, stock FROM products WHERE id = $1', [
        call.request.id,
      ])
      .then(
        ({ rows: [row] }) => {
          if (!row) return callback({ code: status.NOT_FOUND, details: 'not found' });
          callback(null, {
            product: {
              id: row.id,
              sku: row.sku,
              name: row.name,
              priceCents: row.price_cents,
              currency: row.currency,
              stock: row.stock,
            },
          });
        },
        () => callback({ code: status.INTERNAL, details: 'internal' }),
      );
  },
});

server.bindAsync(
  `127.0.0.1:${process.env.PORT ?? 0}`,
  ServerCredentials.createInsecure(),
  (error, port) => {
    if (error) throw error;
    process.stdout.write(`READY ${port}\n`);
  },
);
process.on('SIGTERM', () => server.tryShutdown(() => void pool.end().then(() => process.exit(0))));
