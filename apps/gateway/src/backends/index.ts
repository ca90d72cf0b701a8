import { OrderServiceClient } from '@repo/contracts/order/v1';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { createServiceClient, type ServiceClient } from '@repo/service-kit/grpc-client';
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

/** A failed backend call remembers which backend it was, for the problem document's detail. */
export function backendOf(error: unknown): BackendName | undefined {
  return (error as { backend?: BackendName } | undefined)?.backend;
}

function tagErrors<C extends object>(client: C, backend: BackendName): C {
  for (const [name, method] of Object.entries(client)) {
    if (typeof method !== 'function' || name === 'close') continue;
    (client as Record<string, unknown>)[name] = (...args: unknown[]) =>
      (method as (...a: unknown[]) => Promise<unknown>)(...args).catch((error: unknown) => {
        if (error && typeof error === 'object') Object.assign(error, { backend });
        throw error;
      });
  }
  return client;
}

/** One long-lived channel per backend, shared by every request; metrics for every call. */
export function createBackends(options: BackendOptions): Backends {
  const observe =
    (service: BackendName) => (event: { method: string; code: string; durationMs: number }) => {
      const labels = { service, method: event.method, code: event.code };
      options.metrics.grpcCalls.inc(labels);
      options.metrics.grpcDuration.observe(labels, event.durationMs / 1000);
    };
  const users = tagErrors(
    createServiceClient(UserServiceClient, options.userAddress, {
      deadlineMs: options.deadlineMs,
      onCallEnd: observe('user'),
    }),
    'user',
  );
  const orders = tagErrors(
    createServiceClient(OrderServiceClient, options.orderAddress, {
      deadlineMs: options.deadlineMs,
      onCallEnd: observe('order'),
    }),
    'order',
  );
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
