import { z } from 'zod';
import { databaseServiceEnv, env, loadConfigOrExit } from '@repo/service-kit/config';

/** Every setting of the user service. Nothing else in the service reads process.env. */
export const configSchema = z.object({
  ...databaseServiceEnv(),
  USER_GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  USER_GRPC_PORT: env.port(50051),
});

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
