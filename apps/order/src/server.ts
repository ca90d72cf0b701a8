import { OrderServiceService, type OrderServiceServer } from '@repo/contracts/order/v1';
import { isDatabaseUnavailable } from '@repo/database/errors';
import { DomainError } from '@repo/service-kit/errors';
import { createGrpcServer, unaryService, type GrpcServer } from '@repo/service-kit/grpc-server';
import { monitorDependency, type DependencyMonitor } from '@repo/service-kit/health';
import type { Logger } from '@repo/service-kit/logger';
import { Catalog, Orders } from './domain/orders';
import type { OrderRepository, UserDirectory } from './domain/ports';
import { orderServiceHandlers } from './transport/grpc';

export const SERVICE_NAME = 'order.v1.OrderService';

export interface OrderServerOptions {
  repository: OrderRepository;
  users: UserDirectory;
  logger: Logger;
  healthCheckIntervalMs: number;
}

export interface OrderServer {
  readonly grpc: GrpcServer;
  readonly database: DependencyMonitor;
  /** Binds, checks the database once, and starts serving. Resolves with the bound port. */
  start(port: number, host?: string): Promise<number>;
  /** Reports NOT_SERVING, drains in-flight calls (up to graceMs) and stops health polling. */
  stop(graceMs: number): Promise<void>;
}

/** Wires the order service without listening, so tests and main.ts build it the same way. */
export function createOrderServer(options: OrderServerOptions): OrderServer {
  const catalog = new Catalog(options.repository);
  const orders = new Orders(options.repository, options.users);
  const grpc = createGrpcServer({
    logger: options.logger,
    services: [
      {
        name: SERVICE_NAME,
        definition: OrderServiceService,
        implementation: unaryService<OrderServiceServer>(
          SERVICE_NAME,
          orderServiceHandlers(catalog, orders),
          {
            logger: options.logger,
            translateError: (error) =>
              isDatabaseUnavailable(error)
                ? new DomainError('UNAVAILABLE', 'the database is unavailable')
                : undefined,
          },
        ),
      },
    ],
  });
  // Health follows this service's own database only. A user-service outage does not make the order
  // service unhealthy (most of its RPCs do not need it): CreateOrder answers UNAVAILABLE instead.
  const database = monitorDependency({
    name: 'postgres',
    check: () => options.repository.ping(),
    onChange: (healthy) => grpc.setServing(healthy),
    intervalMs: options.healthCheckIntervalMs,
    timeoutMs: Math.max(1_000, options.healthCheckIntervalMs),
    logger: options.logger,
  });
  return {
    grpc,
    database,
    async start(port, host = '0.0.0.0') {
      const bound = await grpc.listen(port, host);
      await database.checkNow();
      return bound;
    },
    async stop(graceMs) {
      database.stop();
      await grpc.shutdown(graceMs);
    },
  };
}
