import { z } from 'zod';
import {
  databaseServiceEnv,
  env,
  loadConfigOrExit,
  eventsEnv,
  tracingEnv,
} from '@repo/service-kit/config';

/** Every setting of the order service. Nothing else in the service reads process.env. */
export const configSchema = z.object({
  ...databaseServiceEnv(),
  ...tracingEnv('order'),
  ...eventsEnv(),
  ORDER_GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  ORDER_GRPC_PORT: env.port(50052),
  /** Prometheus `/metrics` on a port of its own (on ORDER_GRPC_HOST); 0 picks a free one. */
  METRICS_PORT: env.port(9102),
  /** Where UserService listens; CreateOrder asks it whether the user exists. */
  USER_SERVICE_ADDR: env.address('127.0.0.1:50051'),
  /** Deadline of the user check: past it, CreateOrder answers UNAVAILABLE instead of hanging. */
  USER_SERVICE_DEADLINE_MS: env.millis(1_000),
});

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
