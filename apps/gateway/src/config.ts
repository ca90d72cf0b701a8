import { z } from 'zod';
import { env, eventsEnv, loadConfigOrExit, tracingEnv } from '@repo/service-kit/config';

/** Every setting of the gateway. Nothing else in the gateway reads process.env. */
export const configSchema = z
  .object({
    NODE_ENV: env.nodeEnv(),
    LOG_LEVEL: env.logLevel(),
    ...tracingEnv('gateway'),
    GATEWAY_HOST: z.string().min(1).default('0.0.0.0'),
    GATEWAY_PORT: env.port(3000),
    /**
     * Listen with SO_REUSEPORT, so that several gateway processes share GATEWAY_PORT and the kernel
     * spreads connections among them (replicas on one machine). Off by default: two unrelated runs
     * must never silently share a port.
     */
    GATEWAY_REUSE_PORT: env.boolean(false),
    USER_SERVICE_ADDR: env.address('127.0.0.1:50051'),
    ORDER_SERVICE_ADDR: env.address('127.0.0.1:50052'),
    // pnpm gen service: service addresses above this line
    /** HS256 key for access tokens, at least 32 characters. Required in production. */
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    JWT_ISSUER: z.string().min(1).default('microservices-reference'),
    JWT_AUDIENCE: z.string().min(1).default('microservices-reference-api'),
    JWT_TTL_SECONDS: z.coerce.number().int().min(60).max(86_400).default(900),
    /** Comma-separated allowed origins, `*` for any; empty disables CORS. */
    CORS_ORIGINS: z.string().default(''),
    /** Requests per client (IP) per window; 0 disables rate limiting. */
    RATE_LIMIT_MAX: z.coerce.number().int().min(0).default(300),
    RATE_LIMIT_WINDOW_MS: env.millis(60_000),
    /**
     * Where rate-limit counts live when several gateways must share them: `redis://host:port[/db]`
     * (`rediss://` for TLS, `user:password@` allowed). Unset: each process counts on its own.
     */
    REDIS_URL: z
      .string()
      .trim()
      .optional()
      .transform((value) => (value ? value : undefined))
      .refine(
        (value) => value === undefined || isRedisUrl(value),
        'must be redis://host:port[/db] (rediss:// for TLS; user:password@ allowed)',
      ),
    /** Longest wait for one Redis command; past it the request is served uncounted (fail-open). */
    REDIS_COMMAND_TIMEOUT_MS: env.millis(50),
    /** Rate-limit keys in Redis are `<prefix>:<client>:<window>`. */
    RATE_LIMIT_KEY_PREFIX: z
      .string()
      .regex(/^\S+$/, 'must be non-empty, without white space')
      .default('gateway:rate-limit'),
    /** Largest JSON body accepted, in bytes. */
    BODY_LIMIT_BYTES: z.coerce.number().int().min(256).max(1_048_576).default(16_384),
    /** How long a route may take end to end, including every backend call. */
    ROUTE_DEADLINE_MS: env.millis(3_000),
    /** Deadline of one backend call (never beyond the route's). */
    BACKEND_DEADLINE_MS: env.millis(2_000),
    /** `trust proxy` setting: how many proxies in front of the gateway set X-Forwarded-For. */
    TRUST_PROXY_HOPS: z.coerce.number().int().min(0).max(10).default(0),
    SHUTDOWN_GRACE_MS: env.millis(10_000),
    /** On SIGTERM, /readyz answers 503 this long before the gateway stops accepting (see env.drainDelay). */
    DRAIN_DELAY_MS: env.drainDelay(),
    /**
     * The events broker, for `GET /v1/orders/events`. The gateway has no database of its own: with
     * the postgres transport, EVENTS_DATABASE_URL must name the broker database, or the stream
     * answers 503 (the rest of the API is unaffected).
     */
    ...eventsEnv(),
    /** A comment line on every open event stream this often (keeps proxies from timing it out). */
    SSE_HEARTBEAT_MS: env.millis(15_000),
    /** Event streams one gateway process holds at most; one more is refused with 503. */
    SSE_MAX_STREAMS: z.coerce.number().int().min(0).default(1_000),
  })
  .superRefine((config, context) => {
    if (config.NODE_ENV === 'production' && !config.JWT_SECRET) {
      context.addIssue({
        code: 'custom',
        path: ['JWT_SECRET'],
        message: 'is required in production (at least 32 characters)',
      });
    }
  });

/** `redis://` or `rediss://`, a host, an optional port and an optional database number. */
function isRedisUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return (
    (url.protocol === 'redis:' || url.protocol === 'rediss:') &&
    url.hostname !== '' &&
    /^(\/\d{0,2})?$/.test(url.pathname) &&
    url.search === '' &&
    url.hash === ''
  );
}

export type Config = z.output<typeof configSchema>;

export const loadConfig = (environment: NodeJS.ProcessEnv): Config =>
  loadConfigOrExit(configSchema, environment);
