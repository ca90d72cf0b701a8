// Composition root of the user service: config -> logger -> database -> repository -> gRPC server,
// the relay of its outbox (the events it publishes), and its metrics on a port of their own.
import { resolve } from 'node:path';
import { provisionDatabase } from '@repo/database/provision';
import { startServiceEvents } from '@repo/events/service';
import { drainDelayMs } from '@repo/service-kit/config';
import { createLogger } from '@repo/service-kit/logger';
import {
  createRegistry,
  dbPoolMetrics,
  grpcServerMetrics,
  startMetricsServer,
} from '@repo/service-kit/metrics';
import { onShutdownSignal } from '@repo/service-kit/shutdown';
import { exitOnStartupError } from '@repo/service-kit/startup';
import { setupTracing } from '@repo/service-kit/tracing';
import { loadConfig } from './config';
import { createDatabase } from './data/prisma';
import { PrismaUserRepository } from './data/user-repository';
import { createUserServer } from './server';

const config = loadConfig(process.env);
const logger = createLogger({
  name: 'user',
  level: config.LOG_LEVEL,
  pretty: config.NODE_ENV === 'development',
});
const tracing = setupTracing(config, logger);

async function main(): Promise<void> {
  const appDir = resolve(__dirname, '..');
  const database = await provisionDatabase({
    database: 'user',
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
  const server = createUserServer({
    repository: new PrismaUserRepository(db),
    logger,
    healthCheckIntervalMs: config.HEALTH_CHECK_INTERVAL_MS,
    onCallEnd: grpcServerMetrics(registry, 'user'),
    hashing: {
      concurrency: config.HASH_CONCURRENCY,
      maxQueued: config.HASH_QUEUE_MAX,
      maxWaitMs: config.HASH_QUEUE_WAIT_MAX_MS,
    },
  });
  const events = startServiceEvents({
    settings: config,
    service: 'user',
    serverUrl: database.url,
    outbox: db.pool,
    registry,
    logger,
  });
  const metricsServer = await startMetricsServer(registry, {
    host: config.USER_GRPC_HOST,
    port: config.METRICS_PORT,
  });

  onShutdownSignal(
    async () => {
      await server.stop(config.SHUTDOWN_GRACE_MS, drainDelayMs(config));
      await events.stop();
      await metricsServer.close();
      await db.close();
      await database.stop();
      await tracing.shutdown();
    },
    { logger, timeoutMs: drainDelayMs(config) + config.SHUTDOWN_GRACE_MS + 5_000 },
  );

  const port = await server.start(config.USER_GRPC_PORT, config.USER_GRPC_HOST);
  // UserRegistered and UserDeleted are written to the outbox with the change; this sends them.
  logger.info(
    {
      port,
      metricsPort: metricsServer.port,
      database: database.embedded
        ? `embedded (${resolve(appDir, config.DATA_DIR)})`
        : 'DATABASE_URL',
    },
    `user service listening on ${config.USER_GRPC_HOST}:${port}`,
  );
}

main().catch(exitOnStartupError(logger));
