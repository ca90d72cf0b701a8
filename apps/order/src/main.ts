// Composition root of the order service: config -> database -> repository, the users it knows (from
// the user service's events, else asked over gRPC) -> gRPC server; its events (the relay of its
// outbox, the consumer of user events). Logger, tracing, provisioning, metrics and shutdown are
// every database service's (@repo/database/service-main).
import { resolve } from 'node:path';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { runDatabaseService } from '@repo/database/service-main';
import { startServiceEvents } from '@repo/events/service';
import { createServiceClient } from '@repo/service-kit/grpc-client';
import { grpcClientMetrics, grpcServerMetrics } from '@repo/service-kit/metrics';
import { GrpcUserDirectory } from './clients/user-directory';
import { loadConfig } from './config';
import { KnownUsers } from './domain/known-users';
import { userEventsConsumer } from './events/user-events';
import { PrismaOrderRepository } from './data/order-repository';
import { createDatabase } from './data/prisma';
import { createOrderServer } from './server';

const config = loadConfig(process.env);

runDatabaseService({
  name: 'order',
  appDir: resolve(__dirname, '..'),
  config,
  host: config.ORDER_GRPC_HOST,
  port: config.ORDER_GRPC_PORT,
  createDatabase,
  compose: ({ db, registry, logger, databaseUrl }) => {
    const userClient = createServiceClient(UserServiceClient, config.USER_SERVICE_ADDR, {
      deadlineMs: config.USER_SERVICE_DEADLINE_MS,
      ...grpcClientMetrics(registry).hooks('user'),
    });
    const repository = new PrismaOrderRepository(db);
    const knownUsers = new KnownUsers(repository, new GrpcUserDirectory(userClient));
    const server = createOrderServer({
      repository,
      users: knownUsers,
      logger,
      healthCheckIntervalMs: config.HEALTH_CHECK_INTERVAL_MS,
      onCallEnd: grpcServerMetrics(registry, 'order'),
    });
    const events = startServiceEvents({
      settings: config,
      service: 'order',
      serverUrl: databaseUrl,
      outbox: db.pool,
      // The inbox of its consumer of user events is in the same database; pruned hourly.
      inbox: db.pool,
      registry,
      consumers: [userEventsConsumer(knownUsers, logger)],
      logger,
    });
    return {
      server,
      stop: [() => events.stop(), () => userClient.close()],
      logFields: { userService: config.USER_SERVICE_ADDR },
    };
  },
});
