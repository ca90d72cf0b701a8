import { z } from 'zod';
import { TARGET_PATTERN } from './discovery';

/** A configuration problem; the message names every bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Parses the environment with a zod schema whose keys are variable names. Fails fast with one
 * message naming each bad variable and why, never with a stack trace from deep inside the app.
 */
export function loadConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv): z.output<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.map(String).join('.') || '(environment)';
    const value =
      issue.path.length === 1 && !SECRET_NAME.test(String(issue.path[0]))
        ? env[String(issue.path[0])]
        : undefined;
    const got = value === undefined ? '' : ` (got ${JSON.stringify(value)})`;
    return `  ${name}: ${issue.message}${got}`;
  });
  return failConfig(`Invalid configuration:\n${lines.join('\n')}`);
}

/** Variables whose values are not repeated in an error: they may hold credentials. */
const SECRET_NAME = /_HEADERS$/;

function failConfig(message: string): never {
  throw new ConfigError(message);
}

/** Building blocks shared by every service's config schema. */
export const env = {
  port: (fallback: number) =>
    z.coerce
      .number({ error: 'must be a port number' })
      .int('must be an integer port number')
      .min(0, 'must be between 0 and 65535')
      .max(65535, 'must be between 0 and 65535')
      .default(fallback),
  logLevel: () =>
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  nodeEnv: () => z.enum(['development', 'production', 'test']).default('development'),
  /** Where another service's replicas are: a gRPC target (see discovery.ts for the forms). */
  address: (fallback: string) =>
    z
      .string()
      .regex(
        TARGET_PATTERN,
        'must be host:port (127.0.0.1:50051), ipv4:a:port,b:port, dns:///name:port or file:///path',
      )
      .default(fallback),
  /** A PostgreSQL connection string, or nothing (then an embedded server is used). */
  optionalDatabaseUrl: () =>
    z
      .string()
      .trim()
      .optional()
      .transform((value) => (value ? value : undefined))
      .refine(
        (value) => value === undefined || /^postgres(ql)?:\/\/.+/.test(value),
        'must be a postgresql:// connection string',
      ),
  boolean: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .optional()
      .transform((value) => (value === undefined ? fallback : value === 'true' || value === '1')),
  /**
   * How long a stopping app keeps serving while it reports NOT_SERVING (a gateway: /readyz 503), so
   * load balancers and health-watching clients move away before it refuses anything. A few seconds
   * in production (about two health-check periods of whatever routes traffic here); 0 elsewhere, so
   * `pnpm dev` and tests stop at once. Set explicitly to override.
   */
  drainDelay: () =>
    z.coerce
      .number()
      .int('must be an integer (milliseconds)')
      .min(0, 'must be 0 or more (milliseconds)')
      .optional(),
  /** Milliseconds, a positive integer. */
  millis: (fallback: number) =>
    z.coerce
      .number()
      .int('must be an integer (milliseconds)')
      .positive('must be positive')
      .default(fallback),
};

/**
 * Tracing settings (see tracing.ts), the same in every app. The OpenTelemetry names, so they mean
 * what they mean everywhere else; read here, never by the SDK from the environment.
 */
export function tracingEnv(serviceName: string) {
  return {
    /** OTLP/HTTP collector base URL (`http://otel-collector:4318`); unset: nothing is exported. */
    OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl(),
    /** The traces URL itself (`.../v1/traces`), used as it is; wins over the base URL above. */
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl(),
    /** Headers of every export request (`api-key=secret,x-tenant=a`), values percent-encoded. */
    OTEL_EXPORTER_OTLP_HEADERS: otlpHeaders(),
    /** More headers for trace exports; a name in both takes this one's value. */
    OTEL_EXPORTER_OTLP_TRACES_HEADERS: otlpHeaders(),
    /** An export request that takes longer is abandoned (milliseconds; default 10 s). */
    OTEL_EXPORTER_OTLP_TIMEOUT: optionalMillis(),
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: optionalMillis(),
    /** `gzip` compresses export requests; `none` (the default) sends them as they are. */
    OTEL_EXPORTER_OTLP_COMPRESSION: otlpCompression(),
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: otlpCompression(),
    OTEL_SERVICE_NAME: z.string().trim().min(1).default(serviceName),
    /** Share of new traces sampled, 0 to 1; a caller's decision (traceparent) is followed. */
    OTEL_TRACES_SAMPLER_ARG: blankAsUnset(
      z.coerce
        .number({ error: 'must be a number from 0 to 1' })
        .min(0, 'must be a number from 0 to 1')
        .max(1, 'must be a number from 0 to 1')
        .default(DEFAULT_TRACE_RATIO),
    ),
    /** Log a span breakdown of each request slower than this (milliseconds); unset: off. */
    TRACE_SLOW_MS: blankAsUnset(
      z.coerce
        .number()
        .int('must be an integer (milliseconds)')
        .min(0, 'must be 0 or more (milliseconds)')
        .optional(),
    ),
  };
}

/**
 * Events settings (see @repo/events), the same in every app that publishes or consumes events.
 * `postgres` (the default, what `pnpm dev` uses) keeps the broker in a database of its own on
 * PostgreSQL; `nats` is NATS JetStream, for compose and production.
 */
export function eventsEnv() {
  return {
    EVENTS_TRANSPORT: z.enum(['postgres', 'nats']).default('postgres'),
    /**
     * The broker database of the `postgres` transport, shared by every service of the system and
     * owned by none. Unset: a database named `events` on this service's own PostgreSQL server.
     */
    EVENTS_DATABASE_URL: env.optionalDatabaseUrl(),
    /** NATS server(s) of the `nats` transport, comma-separated. */
    NATS_URL: z.string().trim().min(1).default('nats://127.0.0.1:4222'),
    /**
     * Keeps this system's events apart from another's on the same broker (the tests' systems share
     * one NATS server): subjects become `events_<namespace>.*`, the stream `EVENTS_<namespace>`.
     */
    EVENTS_NAMESPACE: z
      .string()
      .trim()
      .regex(/^[A-Za-z0-9_]*$/, 'must be letters, digits and "_"')
      .default(''),
    /**
     * Servers holding a copy of each NATS stream of the `nats` transport (applied when the app
     * starts, to a new or an existing stream): 1 for a single server (compose, `pnpm dev`), 3 on a
     * clustered production NATS. More than 1 fails on a single server. Set it alike in every app.
     */
    EVENTS_STREAM_REPLICAS: blankAsUnset(
      z.coerce
        .number({ error: 'must be a number of servers from 1 to 5' })
        .int('must be a number of servers from 1 to 5')
        .min(1, 'must be a number of servers from 1 to 5')
        .max(5, 'must be a number of servers from 1 to 5')
        .default(1),
    ),
    /**
     * How long the relay keeps a sent event in the service's outbox, marked `sent_at`, to be
     * looked at (ms). 0, the default: deleted once the broker confirmed it, which costs each write
     * the least (the broker keeps events 7 days).
     */
    OUTBOX_RETAIN_SENT_MS: blankAsUnset(
      z.coerce
        .number({ error: 'must be a number of milliseconds' })
        .int('must be a whole number of milliseconds')
        .min(0, 'must be 0 or more milliseconds')
        .default(0),
    ),
  };
}

/** `VAR=` means unset, not 0 (which is what coercing '' to a number would make of it). */
const blankAsUnset = <S extends z.ZodType>(schema: S) =>
  z.preprocess((value) => (value === '' ? undefined : value), schema);

const httpUrl = () =>
  z
    .string()
    .trim()
    .optional()
    .transform((value) => (value ? value : undefined))
    .refine(
      (value) => value === undefined || /^https?:\/\/[^/]+/.test(value),
      'must be an http:// or https:// URL',
    );

const optionalMillis = () =>
  blankAsUnset(
    z.coerce
      .number({ error: 'must be a number (milliseconds)' })
      .int('must be an integer (milliseconds)')
      .positive('must be positive (milliseconds)')
      .optional(),
  );

const otlpCompression = () =>
  blankAsUnset(z.enum(['gzip', 'none'], { error: 'must be gzip or none' }).optional());

/** An HTTP header name (RFC 9110's token). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * OTEL_EXPORTER_OTLP_HEADERS: `name=value` pairs separated by commas, each value percent-encoded
 * (what OpenTelemetry's SDKs read). A pair without `=`, a name that is not a header name or a
 * value that does not decode is refused, naming the pair: an API key silently dropped would show
 * up only as a collector refusing every export.
 */
const otlpHeaders = () =>
  z
    .string()
    .optional()
    .transform((text, context) => {
      const headers: Record<string, string> = {};
      const pairs = (text ?? '').split(',');
      for (const [index, pair] of pairs.entries()) {
        if (pair.trim() === '') continue;
        const equals = pair.indexOf('=');
        const name = pair.slice(0, Math.max(equals, 0)).trim();
        let value: string | undefined;
        try {
          value = equals > 0 ? decodeURIComponent(pair.slice(equals + 1).trim()) : undefined;
        } catch {
          value = undefined;
        }
        if (!HEADER_NAME.test(name) || value === undefined || /[\r\n\0]/.test(value)) {
          context.addIssue({
            code: 'custom',
            // The pair's name only: its value may be a secret.
            message: `must be name=value pairs separated by commas, values percent-encoded: pair ${index + 1}${name ? ` (${name})` : ''} is not one`,
          });
          return z.NEVER;
        }
        headers[name.toLowerCase()] = value;
      }
      return headers;
    });

/** OTEL_TRACES_SAMPLER_ARG's default: see "Tracing" in the README for what it costs. */
export const DEFAULT_TRACE_RATIO = 0.1;

/** DRAIN_DELAY_MS as set, else 5 s in production and 0 elsewhere (see `env.drainDelay`). */
export function drainDelayMs(config: {
  NODE_ENV: string;
  DRAIN_DELAY_MS?: number | undefined;
}): number {
  return config.DRAIN_DELAY_MS ?? (config.NODE_ENV === 'production' ? 5_000 : 0);
}

/**
 * The settings every service that owns a PostgreSQL database shares; spread them into the
 * service's own schema next to its port and peers.
 */
export function databaseServiceEnv() {
  return {
    NODE_ENV: env.nodeEnv(),
    LOG_LEVEL: env.logLevel(),
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
    DRAIN_DELAY_MS: env.drainDelay(),
  };
}

/**
 * For `main.ts`: load the config or print the problem and exit 1. Use only at the composition
 * root; everything else receives the parsed config.
 */
export function loadConfigOrExit<S extends z.ZodType>(
  schema: S,
  environment: NodeJS.ProcessEnv,
): z.output<S> {
  try {
    return loadConfig(schema, environment);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}
