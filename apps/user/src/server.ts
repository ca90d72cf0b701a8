import { UserServiceService, type UserServiceServer } from '@repo/contracts/user/v1';
import { createGrpcServer, unaryService, type GrpcServer } from '@repo/service-kit/grpc-server';
import { isDatabaseUnavailable } from '@repo/database/errors';
import { DomainError } from '@repo/service-kit/errors';
import { monitorDependency, type DependencyMonitor } from '@repo/service-kit/health';
import type { Logger } from '@repo/service-kit/logger';
import type { UserRepository } from './domain/user-repository';
import { Users } from './domain/users';
import { userServiceHandlers } from './transport/grpc';

export const SERVICE_NAME = 'user.v1.UserService';

export interface UserServerOptions {
  repository: UserRepository;
  logger: Logger;
  healthCheckIntervalMs: number;
}

export interface UserServer {
  readonly grpc: GrpcServer;
  readonly database: DependencyMonitor;
  /** Binds, checks the database once, and starts serving. Resolves with the bound port. */
  start(port: number, host?: string): Promise<number>;
  /** Reports NOT_SERVING, drains in-flight calls (up to graceMs) and stops health polling. */
  stop(graceMs: number): Promise<void>;
}

/** Wires the user service without listening, so tests and main.ts build it the same way. */
export function createUserServer(options: UserServerOptions): UserServer {
  const users = new Users(options.repository);
  const grpc = createGrpcServer({
    logger: options.logger,
    services: [
      {
        name: SERVICE_NAME,
        definition: UserServiceService,
        implementation: unaryService<UserServiceServer>(SERVICE_NAME, userServiceHandlers(users), {
          logger: options.logger,
          translateError: (error) =>
            isDatabaseUnavailable(error)
              ? new DomainError('UNAVAILABLE', 'the database is unavailable')
              : undefined,
        }),
      },
    ],
  });
  // Health follows the database: NOT_SERVING while it is unreachable, SERVING when it is back.
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
