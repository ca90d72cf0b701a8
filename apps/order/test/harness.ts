import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { OrderServiceClient } from '@repo/contracts/order/v1';
import { UserServiceService, type UserServiceServer } from '@repo/contracts/user/v1';
import { createServiceClient, type ServiceClient } from '@repo/service-kit/grpc-client';
import { DomainError } from '@repo/service-kit/errors';
import { createGrpcServer, unaryService, type GrpcServer } from '@repo/service-kit/grpc-server';
import { createLogger, type Logger } from '@repo/service-kit/logger';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { GrpcUserDirectory } from '../src/clients/user-directory';
import { PrismaOrderRepository } from '../src/data/order-repository';
import { createDatabase, type PrismaClient } from '../src/data/prisma';
import { createOrderServer, type OrderServer } from '../src/server';

export const logger: Logger = createLogger({
  name: 'order-test',
  level: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent',
  pretty: false,
});

/**
 * A real gRPC server standing in for the user service, so tests can make it slow or take it away.
 * It knows the users in `knownUsers`; every other id is NOT_FOUND.
 */
export class StandInUserService {
  readonly knownUsers = new Set<string>();
  delayMs = 0;
  calls = 0;
  private server: GrpcServer | undefined;
  private abort = new AbortController();
  port = 0;

  async start(port = 0): Promise<string> {
    const notUsed = () =>
      Promise.reject(new DomainError('PERMISSION_DENIED', 'not part of the stand-in'));
    this.server = createGrpcServer({
      logger,
      services: [
        {
          name: 'user.v1.UserService',
          definition: UserServiceService,
          implementation: unaryService<UserServiceServer>(
            'user.v1.UserService',
            {
              getUser: async (request) => {
                this.calls++;
                if (this.delayMs)
                  await sleep(this.delayMs, undefined, { signal: this.abort.signal });
                if (!this.knownUsers.has(request.id))
                  throw new DomainError('NOT_FOUND', `user ${request.id} not found`);
                return { user: { id: request.id, email: 'someone@example.com', name: 'Someone' } };
              },
              createUser: notUsed,
              batchGetUsers: notUsed,
              listUsers: notUsed,
              updateUser: notUsed,
              deleteUser: notUsed,
              verifyCredentials: notUsed,
            },
            { logger },
          ),
        },
      ],
    });
    this.port = await this.server.listen(port, '127.0.0.1');
    this.server.setServing(true);
    return `127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.abort.abort(); // cut short any injected delay
    this.abort = new AbortController();
    await this.server?.shutdown(100);
    this.server = undefined;
  }
}

export interface RunningOrderService {
  server: OrderServer;
  address: string;
  client: ServiceClient<OrderServiceClient, keyof typeof OrderServiceClient.service>;
  prisma: PrismaClient;
  stop(): Promise<void>;
}

/** The real order service on an ephemeral port, on the given database, calling `userAddress`. */
export async function startOrderService(
  databaseUrl: string,
  userAddress: string,
  userDeadlineMs = 5_000,
): Promise<RunningOrderService> {
  const db = createDatabase({ connectionString: databaseUrl, poolSize: 10 });
  const prisma = db.prisma;
  const userClient = createServiceClient(UserServiceClient, userAddress, {
    deadlineMs: userDeadlineMs,
  });
  const server = createOrderServer({
    repository: new PrismaOrderRepository(db),
    users: new GrpcUserDirectory(userClient),
    logger,
    healthCheckIntervalMs: 200,
  });
  const port = await server.start(0, '127.0.0.1');
  const address = `127.0.0.1:${port}`;
  // Generous: no test here is about this deadline (those about deadlines pass their own). No
  // retries: these tests see exactly what the one server under test answers.
  const client = createServiceClient(OrderServiceClient, address, {
    deadlineMs: 60_000,
    retry: false,
  });
  return {
    server,
    address,
    client,
    prisma,
    async stop() {
      client.close();
      userClient.close();
      await server.stop(1_000);
      await db.close();
    },
  };
}

export { status };
