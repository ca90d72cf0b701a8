import { z } from 'zod';
import { env, loadConfigOrExit } from '@repo/service-kit/config';

/** Every setting of the user service. Nothing else in the service reads process.env. */
export const configSchema = z.object({
  NODE_ENV: env.nodeEnv(),
  LOG_LEVEL: env.logLevel(),
  USER_GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  USER_GRPC_PORT: env.port(50051),
  /** PostgreSQL for this service. Absent: an embedded server is started in DATA_DIR. */
  DATABASE_URL: env.optionalDatabaseUrl(),
  /** Apply committed migrations at start-up (compose runs a one-shot migration job instead). */
  MIGRATE_ON_START: env.boolean(true),
  /** Where the embedded PostgreSQL keeps its data (only without DATABASE_URL). */
  DATA_DIR: z.string().min(1).default('.data'),
  /** Port of the embedded PostgreSQL; a free one when unset. */
  EMBEDDED_PG_PORT: env.port(0),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(100).default(10),
  HEALTH_CHECK_INTERVAL_MS: env.millis(2_000),
  SHUTDOWN_GRACE_MS: env.millis(10_000),
});

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
