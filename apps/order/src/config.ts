import { z } from 'zod';
import { env, loadConfigOrExit } from '@repo/service-kit/config';

/** Every setting of the order service. Nothing else in the service reads process.env. */
export const configSchema = z.object({
  NODE_ENV: env.nodeEnv(),
  LOG_LEVEL: env.logLevel(),
  ORDER_GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  ORDER_GRPC_PORT: env.port(50052),
  /** Where UserService listens; CreateOrder asks it whether the user exists. */
  USER_SERVICE_ADDR: env.address('127.0.0.1:50051'),
  /** Deadline of the user check: past it, CreateOrder answers UNAVAILABLE instead of hanging. */
  USER_SERVICE_DEADLINE_MS: env.millis(1_000),
  /** PostgreSQL for this service. Absent: an embedded server is started in DATA_DIR. */
  DATABASE_URL: env.optionalDatabaseUrl(),
  MIGRATE_ON_START: env.boolean(true),
  DATA_DIR: z.string().min(1).default('.data'),
  EMBEDDED_PG_PORT: env.port(0),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(100).default(10),
  HEALTH_CHECK_INTERVAL_MS: env.millis(2_000),
  SHUTDOWN_GRACE_MS: env.millis(10_000),
});

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
