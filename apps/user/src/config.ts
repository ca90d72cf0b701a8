import { availableParallelism } from 'node:os';
import { z } from 'zod';
import {
  databaseServiceEnv,
  env,
  eventsEnv,
  loadConfigOrExit,
  tracingEnv,
} from '@repo/service-kit/config';

/** Every setting of the user service. Nothing else in the service reads process.env. */
export const configSchema = z.object({
  ...databaseServiceEnv(),
  ...tracingEnv('user'),
  ...eventsEnv(),
  USER_GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  USER_GRPC_PORT: env.port(50051),
  /** Prometheus `/metrics` on a port of its own (on USER_GRPC_HOST); 0 picks a free one. */
  METRICS_PORT: env.port(9101),
  /** Password hashes computed at once (scrypt runs on libuv's pool of 4 threads): about the cores. */
  HASH_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(4)
    .default(Math.min(4, availableParallelism())),
  /** Hashes waiting at most; more are refused at once with RESOURCE_EXHAUSTED (HTTP 503). */
  HASH_QUEUE_MAX: z.coerce.number().int().min(0).max(10_000).default(64),
  /** A hash expected to wait longer than this before it starts is refused at once, too. */
  HASH_QUEUE_WAIT_MAX_MS: env.millis(500),
});

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
