// The composition root every service that owns a PostgreSQL database shares: logger and tracing,
// its database (provisioned: embedded in development, migrated when asked), the pool and its
// metrics, /metrics on a port of its own, the gRPC server, and graceful shutdown. What is the
// service's own (its repository, server, events, clients) comes from `compose`.
import { resolve } from 'node:path';
import { drainDelayMs } from '@repo/service-kit/config';
import { createLogger, type Logger, type LoggerOptions } from '@repo/service-kit/logger';
import { createRegistry, dbPoolMetrics, startMetricsServer } from '@repo/service-kit/metrics';
import type { ServiceHost } from '@repo/service-kit/service-host';
import { onShutdownSignal } from '@repo/service-kit/shutdown';
import { exitOnStartupError } from '@repo/service-kit/startup';
import { setupTracing, type TracingConfig } from '@repo/service-kit/tracing';
import type { DatabaseOptions, PrismaDatabase } from './prisma';
import { provisionDatabase } from './provision';

/** The settings `databaseServiceEnv()` and `tracingEnv()` give, and the metrics port. */
export interface DatabaseServiceConfig extends TracingConfig {
  NODE_ENV: string;
  LOG_LEVEL: LoggerOptions['level'];
  DATABASE_URL?: string | undefined;
  MIGRATE_ON_START: boolean;
  DATA_DIR: string;
  EMBEDDED_PG_PORT: number;
  DATABASE_POOL_SIZE: number;
  SHUTDOWN_GRACE_MS: number;
  DRAIN_DELAY_MS?: number | undefined;
  METRICS_PORT: number;
}

/** What `compose` is given to build the service with. */
export interface ServiceParts<D> {
  db: D;
  /** The service's metrics registry (served on METRICS_PORT). */
  registry: ReturnType<typeof createRegistry>;
  logger: Logger;
  /** The service's own database's URL: the `postgres` events transport's default server. */
  databaseUrl: string;
}

/** The service `compose` built. */
export interface ComposedService {
  server: ServiceHost;
  /** Run at shutdown in this order, after the server has stopped and before the pool closes. */
  stop?: (() => Promise<void> | void)[];
  /** More fields for the "listening" log line. */
  logFields?: Record<string, unknown>;
}

export interface DatabaseServiceOptions<C extends DatabaseServiceConfig, D> {
  /** The service's name: its logger's, its database's. */
  name: string;
  /** The app's directory (where prisma/ lives). */
  appDir: string;
  config: C;
  /** Where the gRPC server listens (METRICS_PORT is on the same host). */
  host: string;
  port: number;
  /** The app's own `createDatabase` (src/data/prisma.ts: its generated Prisma client). */
  createDatabase(options: DatabaseOptions): D;
  compose(parts: ServiceParts<D>): ComposedService;
}

/** Starts the service; a failure to start is logged and exits 1 (`exitOnStartupError`). */
export function runDatabaseService<
  C extends DatabaseServiceConfig,
  D extends PrismaDatabase<unknown>,
>(options: DatabaseServiceOptions<C, D>): void {
  const { name, appDir, config, host } = options;
  const logger = createLogger({
    name,
    level: config.LOG_LEVEL,
    pretty: config.NODE_ENV === 'development',
  });
  const tracing = setupTracing(config, logger);

  async function main(): Promise<void> {
    const database = await provisionDatabase({
      database: name,
      appDir,
      databaseUrl: config.DATABASE_URL,
      dataDir: resolve(appDir, config.DATA_DIR),
      port: config.EMBEDDED_PG_PORT || undefined,
      migrate: config.MIGRATE_ON_START,
      onLog: (line) => logger.trace({ postgres: line }),
    });
    const db = options.createDatabase({
      connectionString: database.url,
      poolSize: config.DATABASE_POOL_SIZE,
    });
    const registry = createRegistry();
    dbPoolMetrics(registry, () => db.poolStats());
    const service = options.compose({ db, registry, logger, databaseUrl: database.url });
    const metricsServer = await startMetricsServer(registry, { host, port: config.METRICS_PORT });

    onShutdownSignal(
      async () => {
        await service.server.stop(config.SHUTDOWN_GRACE_MS, drainDelayMs(config));
        for (const stop of service.stop ?? []) await stop();
        await metricsServer.close();
        await db.close();
        await database.stop();
        await tracing.shutdown();
      },
      { logger, timeoutMs: drainDelayMs(config) + config.SHUTDOWN_GRACE_MS + 5_000 },
    );

    const port = await service.server.start(options.port, host);
    logger.info(
      {
        port,
        metricsPort: metricsServer.port,
        ...service.logFields,
        database: database.embedded
          ? `embedded (${resolve(appDir, config.DATA_DIR)})`
          : 'DATABASE_URL',
      },
      `${name} service listening on ${host}:${port}`,
    );
  }

  main().catch(exitOnStartupError(logger));
}
