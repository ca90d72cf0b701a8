// Composition root of the order service: config -> logger -> database -> repository, the users it
// knows (from the user service's events, else asked over gRPC) -> gRPC server; its events (the relay
// of its outbox, the consumer of user events); and its metrics on a port of their own.
import { resolve } from 'node:path';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { provisionDatabase } from '@repo/database/provision';
import { startServiceEvents } from '@repo/events/service';
import { createServiceClient } from '@repo/service-kit/grpc-client';
import { drainDelayMs } from '@repo/service-kit/config';
import { createLogger } from '@repo/service-kit/logger';
import {
  createRegistry,
  dbPoolMetrics,
  grpcClientMetrics,
  grpcServerMetrics,
  startMetricsServer,
} from '@repo/service-kit/metrics';
import { onShutdownSignal } from '@repo/service-kit/shutdown';
import { exitOnStartupError } from '@repo/service-kit/startup';
import { setupTracing } from '@repo/service-kit/tracing';
import { GrpcUserDirectory } from './clients/user-directory';
import { loadConfig } from './config';
import { KnownUsers } from './domain/known-users';
import { userEventsConsumer } from './events/user-events';
import { PrismaOrderRepository } from './data/order-repository';
import { createDatabase } from './data/prisma';
import { createOrderServer } from './server';

const config = loadConfig(process.env);
const logger = createLogger({
  name: 'order',
  level: config.LOG_LEVEL,
  pretty: config.NODE_ENV === 'development',
});
const tracing = setupTracing(config, logger);

async function main(): Promise<void> {
  const appDir = resolve(__dirname, '..');
  const database = await provisionDatabase({
    database: 'order',
    appDir,
    databaseUrl: config.DATABASE_URL,
    dataDir: resolve(appDir, config.DATA_DIR),
    port: config.EMBEDDED_PG_PORT || undefined,
    migrate: config.MIGRATE_ON_START,
    onLog: (line) => logger.trace({ postgres: line }),
  });
  const db = createDatabase({
    connectionString: database.url,
    poolSize: config.DATABASE_POOL_SIZE,
  });
  const registry = createRegistry();
  dbPoolMetrics(registry, () => db.poolStats());
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
    serverUrl: database.url,
    outbox: db.pool,
    // The inbox of its consumer of user events is in the same database; pruned hourly.
    inbox: db.pool,
    registry,
    consumers: [userEventsConsumer(knownUsers, logger)],
    logger,
  });
  const metricsServer = await startMetricsServer(registry, {
    host: config.ORDER_GRPC_HOST,
    port: config.METRICS_PORT,
  });

  onShutdownSignal(
    async () => {
      await server.stop(config.SHUTDOWN_GRACE_MS, drainDelayMs(config));
      await events.stop();
      await metricsServer.close();
      userClient.close();
      await db.close();
      await database.stop();
      await tracing.shutdown();
    },
    { logger, timeoutMs: drainDelayMs(config) + config.SHUTDOWN_GRACE_MS + 5_000 },
  );

  const port = await server.start(config.ORDER_GRPC_PORT, config.ORDER_GRPC_HOST);
  logger.info(
    {
      port,
      metricsPort: metricsServer.port,
      userService: config.USER_SERVICE_ADDR,
      database: database.embedded
        ? `embedded (${resolve(appDir, config.DATA_DIR)})`
        : 'DATABASE_URL',
    },
    `order service listening on ${config.ORDER_GRPC_HOST}:${port}`,
  );
}

main().catch(exitOnStartupError(logger));
