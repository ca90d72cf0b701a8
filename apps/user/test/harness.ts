import { UserServiceClient } from '@repo/contracts/user/v1';
import { createServiceClient } from '@repo/service-kit/grpc-client';
import { createLogger } from '@repo/service-kit/logger';
import { createDatabase } from '../src/data/prisma';
import { PrismaUserRepository } from '../src/data/user-repository';
import { createUserServer, type UserServer, type UserServerOptions } from '../src/server';

export interface RunningUserService {
  server: UserServer;
  address: string;
  client: ReturnType<
    typeof createServiceClient<UserServiceClient, typeof UserServiceClient.service>
  >;
  stop(): Promise<void>;
}

/** The real user service on an ephemeral port, on the given database, with a generated client. */
export async function startUserService(
  databaseUrl: string,
  healthCheckIntervalMs = 200,
  /**
   * Password hashing bounds. By default generous, so that tests not about shedding do not depend
   * on how fast this machine hashes right now; tests of shedding pass tight ones.
   */
  hashing: UserServerOptions['hashing'] = { maxQueued: 1_000, maxWaitMs: 60_000 },
): Promise<RunningUserService> {
  const logger = createLogger({ name: 'user-test', level: 'silent', pretty: false });
  const db = createDatabase({ connectionString: databaseUrl, poolSize: 10 });
  const server = createUserServer({
    repository: new PrismaUserRepository(db),
    logger,
    healthCheckIntervalMs,
    hashing,
  });
  const port = await server.start(0, '127.0.0.1');
  const address = `127.0.0.1:${port}`;
  // Generous: no test here is about this deadline (those about deadlines pass their own), and
  // hashing on a busy machine is slow. No retries: these tests see exactly what the one server
  // under test answers.
  const client = createServiceClient(UserServiceClient, address, {
    deadlineMs: 60_000,
    retry: false,
  });
  return {
    server,
    address,
    client,
    async stop() {
      client.close();
      await server.stop(1_000);
      await db.close();
    },
  };
}
