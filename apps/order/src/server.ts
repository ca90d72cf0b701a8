import { OrderServiceService, type OrderServiceServer } from '@repo/contracts/order/v1';
import { translateDatabaseError } from '@repo/database/errors';
import { unaryService, type UnaryServiceOptions } from '@repo/service-kit/grpc-server';
import { createServiceHost, type ServiceHost } from '@repo/service-kit/service-host';
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
  /** Told about every finished call: for metrics (grpcServerMetrics in @repo/service-kit/metrics). */
  onCallEnd?: UnaryServiceOptions['onCallEnd'];
}

export type OrderServer = ServiceHost;

/** Wires the order service without listening, so tests and main.ts build it the same way. */
export function createOrderServer(options: OrderServerOptions): OrderServer {
  const catalog = new Catalog(options.repository);
  const orders = new Orders(options.repository, options.users);
  return createServiceHost({
    name: SERVICE_NAME,
    definition: OrderServiceService,
    implementation: unaryService<OrderServiceServer>(
      SERVICE_NAME,
      orderServiceHandlers(catalog, orders),
      {
        logger: options.logger,
        translateError: translateDatabaseError,
        onCallEnd: options.onCallEnd,
      },
    ),
    logger: options.logger,
    // Health follows this service's own database only. A user-service outage does not make the
    // order service unhealthy (most of its RPCs do not need it): CreateOrder answers UNAVAILABLE.
    dependency: { name: 'postgres', check: () => options.repository.ping() },
    healthCheckIntervalMs: options.healthCheckIntervalMs,
  });
}
