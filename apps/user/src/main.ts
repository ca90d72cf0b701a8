// Composition root of the user service: config -> database -> repository -> gRPC server, and the
// relay of its outbox (the events it publishes). Logger, tracing, provisioning, metrics and
// shutdown are every database service's (@repo/database/service-main).
import { resolve } from 'node:path';
import { runDatabaseService } from '@repo/database/service-main';
import { startServiceEvents } from '@repo/events/service';
import { grpcServerMetrics } from '@repo/service-kit/metrics';
import { loadConfig } from './config';
import { createDatabase } from './data/prisma';
import { PrismaUserRepository } from './data/user-repository';
import { createUserServer } from './server';

const config = loadConfig(process.env);

runDatabaseService({
  name: 'user',
  appDir: resolve(__dirname, '..'),
  config,
  host: config.USER_GRPC_HOST,
  port: config.USER_GRPC_PORT,
  createDatabase,
  compose: ({ db, registry, logger, databaseUrl }) => {
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
    // UserRegistered and UserDeleted are written to the outbox with the change; this sends them.
    const events = startServiceEvents({
      settings: config,
      service: 'user',
      serverUrl: databaseUrl,
      outbox: db.pool,
      registry,
      logger,
    });
    return { server, stop: [() => events.stop()] };
  },
});
