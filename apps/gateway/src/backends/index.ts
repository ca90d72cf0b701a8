import { OrderServiceClient } from '@repo/contracts/order/v1';
import { UserServiceClient } from '@repo/contracts/user/v1';
import {
  createServiceClient,
  failedService,
  type ServiceClient,
} from '@repo/service-kit/grpc-client';
import { createHealthClient, type HealthClient } from '@repo/service-kit/health-client';
import type { Metrics } from '../metrics';

export type BackendName = 'user' | 'order';

export const BACKEND_SERVICES: Readonly<Record<BackendName, string>> = {
  user: 'user.v1.UserService',
  order: 'order.v1.OrderService',
};

export type UserBackend = ServiceClient<UserServiceClient, keyof typeof UserServiceClient.service>;
export type OrderBackend = ServiceClient<
  OrderServiceClient,
  keyof typeof OrderServiceClient.service
>;

export interface Backends {
  users: UserBackend;
  orders: OrderBackend;
  health: Readonly<Record<BackendName, HealthClient>>;
  close(): void;
}

export interface BackendOptions {
  userAddress: string;
  orderAddress: string;
  deadlineMs: number;
  metrics: Metrics;
}

/** Which backend a failed call went to, for the problem document's detail. */
export function backendOf(error: unknown): BackendName | undefined {
  const service = failedService(error);
  return (Object.keys(BACKEND_SERVICES) as BackendName[]).find(
    (name) => BACKEND_SERVICES[name] === service,
  );
}

/** One long-lived channel per backend, shared by every request; metrics for every call. */
export function createBackends(options: BackendOptions): Backends {
  const users = createServiceClient(UserServiceClient, options.userAddress, {
    deadlineMs: options.deadlineMs,
    ...options.metrics.grpcClient.hooks('user'),
  });
  const orders = createServiceClient(OrderServiceClient, options.orderAddress, {
    deadlineMs: options.deadlineMs,
    ...options.metrics.grpcClient.hooks('order'),
  });
  const health = {
    user: createHealthClient(options.userAddress),
    order: createHealthClient(options.orderAddress),
  };
  return {
    users,
    orders,
    health,
    close() {
      users.close();
      orders.close();
      health.user.close();
      health.order.close();
    },
  };
}
