import { OrderServiceClient } from '@repo/contracts/order/v1';
import { UserServiceClient } from '@repo/contracts/user/v1';
// pnpm gen service: imports above this line
import {
  createServiceClient,
  failedService,
  type ServiceClient,
} from '@repo/service-kit/grpc-client';
import { createHealthClient, type HealthClient } from '@repo/service-kit/health-client';
import type { Metrics } from '../metrics';

/**
 * The services the gateway calls, by app name, with their gRPC service names (for health). A service
 * `pnpm gen service` writes with gateway routes is added at each `// pnpm gen service:` line.
 */
export const BACKEND_SERVICES = {
  user: 'user.v1.UserService',
  order: 'order.v1.OrderService',
  // pnpm gen service: services above this line
} as const;

export type BackendName = keyof typeof BACKEND_SERVICES;

export type UserBackend = ServiceClient<UserServiceClient, keyof typeof UserServiceClient.service>;
export type OrderBackend = ServiceClient<
  OrderServiceClient,
  keyof typeof OrderServiceClient.service
>;

export interface Backends {
  users: UserBackend;
  orders: OrderBackend;
  // pnpm gen service: client types above this line
  health: Readonly<Record<BackendName, HealthClient>>;
  close(): void;
}

export interface BackendOptions {
  userAddress: string;
  orderAddress: string;
  // pnpm gen service: address options above this line
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
  const addresses: Record<BackendName, string> = {
    user: options.userAddress,
    order: options.orderAddress,
    // pnpm gen service: addresses above this line
  };
  const callOptions = (name: BackendName) => ({
    deadlineMs: options.deadlineMs,
    ...options.metrics.grpcClient.hooks(name),
  });
  const clients = {
    users: createServiceClient(UserServiceClient, addresses.user, callOptions('user')),
    orders: createServiceClient(OrderServiceClient, addresses.order, callOptions('order')),
    // pnpm gen service: clients above this line
  };
  const health = Object.fromEntries(
    (Object.keys(addresses) as BackendName[]).map((name) => [
      name,
      createHealthClient(addresses[name]),
    ]),
  ) as Record<BackendName, HealthClient>;
  return {
    ...clients,
    health,
    close() {
      for (const client of [...Object.values(clients), ...Object.values(health)]) client.close();
    },
  };
}
