import { setTimeout as sleep } from 'node:timers/promises';
import { status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { OrderServiceService } from '@repo/contracts/order/v1';
import { createGrpcServer, type GrpcServer } from '@repo/service-kit/grpc-server';
import { logger } from './harness';

/**
 * A real gRPC server standing in for the order service: GetProduct answers with the gRPC status
 * whose number is the requested id ("5" -> NOT_FOUND), or after `delayMs`. Only for the tests of
 * the gateway's error mapping and deadlines; every other test uses the real services.
 */
export class StandInOrderService {
  delayMs = 0;
  private server: GrpcServer | undefined;
  private abort = new AbortController();

  async start(): Promise<string> {
    const getProduct = async (
      call: ServerUnaryCall<{ id: string }, unknown>,
      callback: sendUnaryData<unknown>,
    ) => {
      if (this.delayMs) {
        try {
          await sleep(this.delayMs, undefined, { signal: this.abort.signal });
        } catch {
          return;
        }
      }
      const code = Number(call.request.id);
      if (Number.isInteger(code) && code > 0 && code <= 16) {
        callback({ code: code as status, details: `stand-in detail for ${status[code]}` });
        return;
      }
      callback(null, {
        product: {
          id: call.request.id,
          sku: 'SKU',
          name: 'Stand-in',
          priceCents: 1,
          currency: 'EUR',
          stock: 1,
        },
      });
    };
    this.server = createGrpcServer({
      logger,
      services: [
        {
          name: 'order.v1.OrderService',
          definition: OrderServiceService,
          implementation: {
            getProduct: (
              call: ServerUnaryCall<{ id: string }, unknown>,
              callback: sendUnaryData<unknown>,
            ) => void getProduct(call, callback),
          },
        },
      ],
    });
    const port = await this.server.listen(0, '127.0.0.1');
    this.server.setServing(true);
    return `127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.server?.shutdown(100);
  }
}
