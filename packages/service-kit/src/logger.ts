import pino, { type Logger, type LevelWithSilent } from 'pino';
import type PinoPretty from 'pino-pretty';
import { currentContext } from './context';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** Service name, on every line as `service`. */
  name: string;
  level: LevelWithSilent;
  /** Human-readable, coloured output for development; JSON lines otherwise. */
  pretty: boolean;
  /** Where JSON lines go (tests); standard output by default. */
  destination?: pino.DestinationStream;
}

/**
 * pino logger. Every line logged while serving a request carries its `requestId` and, when the
 * request is traced, its `trace_id` and the current `span_id` (taken from the async request
 * context, so no code has to pass a child logger around). Secrets never reach the
 * output: the redact list covers the fields that could hold them.
 */
export function createLogger(options: LoggerOptions): Logger {
  const config: pino.LoggerOptions = {
    level: options.level,
    base: { service: options.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin() {
      const context = currentContext();
      if (!context) return {};
      const span = context.trace?.spanContext();
      return span
        ? { requestId: context.requestId, trace_id: span.traceId, span_id: span.spanId }
        : { requestId: context.requestId };
    },
    redact: {
      paths: [
        'password',
        '*.password',
        'passwordHash',
        '*.passwordHash',
        'authorization',
        '*.authorization',
      ],
      censor: '[redacted]',
    },
  };
  if (options.pretty) {
    // Loaded only in development: production never pays for it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pretty = require('pino-pretty') as typeof PinoPretty;
    // A synchronous stream, not a worker-thread transport: nothing to flush at exit.
    return pino(
      config,
      pretty({
        colorize: true,
        sync: true,
        singleLine: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,service',
      }),
    );
  }
  return options.destination ? pino(config, options.destination) : pino(config);
}
