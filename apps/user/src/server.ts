import { UserServiceService, type UserServiceServer } from '@repo/contracts/user/v1';
import { BoundedQueue, type BoundedQueueOptions } from '@repo/service-kit/bounded-queue';
import { unaryService, type UnaryServiceOptions } from '@repo/service-kit/grpc-server';
import { createServiceHost, type ServiceHost } from '@repo/service-kit/service-host';
import { translateDatabaseError } from '@repo/database/errors';
import type { Logger } from '@repo/service-kit/logger';
import type { UserRepository } from './domain/user-repository';
import { DEFAULT_HASHING, Users } from './domain/users';
import { userServiceHandlers } from './transport/grpc';

export const SERVICE_NAME = 'user.v1.UserService';

export interface UserServerOptions {
  repository: UserRepository;
  logger: Logger;
  healthCheckIntervalMs: number;
  /** Told about every finished call: for metrics (grpcServerMetrics in @repo/service-kit/metrics). */
  onCallEnd?: UnaryServiceOptions['onCallEnd'];
  /** Password hashing's concurrency and queue bounds (defaults: DEFAULT_HASHING). */
  hashing?: Partial<Pick<BoundedQueueOptions, 'concurrency' | 'maxQueued' | 'maxWaitMs'>>;
}

export type UserServer = ServiceHost;

/** Wires the user service without listening, so tests and main.ts build it the same way. */
export function createUserServer(options: UserServerOptions): UserServer {
  const users = new Users(options.repository, {
    hashing: new BoundedQueue({ ...DEFAULT_HASHING, ...options.hashing }),
  });
  return createServiceHost({
    name: SERVICE_NAME,
    definition: UserServiceService,
    implementation: unaryService<UserServiceServer>(SERVICE_NAME, userServiceHandlers(users), {
      logger: options.logger,
      translateError: translateDatabaseError,
      onCallEnd: options.onCallEnd,
    }),
    logger: options.logger,
    // Health follows the database: NOT_SERVING while it is unreachable, SERVING when it is back.
    dependency: { name: 'postgres', check: () => options.repository.ping() },
    healthCheckIntervalMs: options.healthCheckIntervalMs,
  });
}
