import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import { connectTransport, type EventsSettings } from './connect';
import { pruneInbox } from './inbox';
import { eventsMetrics } from './metrics';
import { startRelay, type Relay } from './relay';
import { subjectOf } from './subjects';
import {
  errorMessage,
  type DeadLetter,
  type Handler,
  type SubscribeOptions,
  type Subscription,
  type Transport,
} from './transport';

/** The part of a pino logger this module writes to. */
export interface EventsLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** A durable consumer of a service: its name, the event types it takes, and its handler. */
export interface ConsumerSpec {
  consumer: string;
  /** Event types (EventTypes in ./subjects); subscribed on the transport's subjects for them. */
  types: readonly string[];
  handler: Handler;
  options?: SubscribeOptions;
}

export interface ServiceEventsOptions {
  settings: EventsSettings;
  /** The service's name: the connection's name and the relay's lock. */
  service: string;
  /** The service's own PostgreSQL server: the `postgres` transport's default broker database. */
  serverUrl?: string;
  /** The service's own database pool: its outbox is relayed when given. */
  outbox?: Pool;
  /**
   * The database holding its consumers' `inbox` (the service's own, usually the `outbox` pool):
   * when given with consumers, rows older than `INBOX_RETENTION_MS` are deleted hourly.
   */
  inbox?: Pool;
  consumers?: readonly ConsumerSpec[];
  logger: EventsLogger;
  /**
   * The service's metrics registry: the outbox's backlog, the consumers' lag and dead letters are
   * exposed on it (./metrics).
   */
  registry?: Registry;
  /** Called for every dead letter, after it was logged (and counted, with `registry`). */
  onDeadLetter?: (deadLetter: DeadLetter) => void;
  /** Between failed connection attempts: initialMs doubling to maxMs (default 500 ms to 10 s). */
  reconnect?: { initialMs?: number; maxMs?: number };
}

export interface ServiceEvents {
  /** The connected transport, once connected. */
  readonly transport: Transport | undefined;
  /**
   * Resolves once connected, the relay started and every consumer subscribed (or once stopped
   * before that); never rejects: failures are logged and retried.
   */
  readonly started: Promise<void>;
  /** Stops consuming (running handlers finish), stops the relay, closes the connection. */
  stop(): Promise<void>;
}

/**
 * How long an inbox row is kept: longer than the broker keeps an event (7 days, both transports),
 * so an event can never be delivered again once its row is gone; a day more for clocks and an
 * event published late in the broker's window. (A dead letter older than that was never applied,
 * so it has no row to miss.)
 */
export const INBOX_RETENTION_MS = 8 * 24 * 3600_000;
const INBOX_PRUNE_EVERY_MS = 3600_000;

/**
 * A service's events, started beside its gRPC server: the relay of its outbox and its consumers.
 *
 * The broker is not needed to serve: the service starts and serves without it (events wait in the
 * outbox, which is the point of having one), and this keeps trying to connect in the background,
 * logging each failure. Once connected, a broker that goes away is the transports' business: NATS
 * reconnects by itself and the PostgreSQL transport's pool makes new connections, while the relay
 * retries what failed and consumers get undelivered events again.
 */
export function startServiceEvents(options: ServiceEventsOptions): ServiceEvents {
  const { logger } = options;
  let stopped = false;
  let transport: Transport | undefined;
  let relay: Relay | undefined;
  const subscriptions: Subscription[] = [];
  const metrics = options.registry
    ? eventsMetrics(options.registry, {
        outbox: options.outbox,
        // Read at scrape time; until connected, the lag is reported as it was last read (0).
        transport: {
          pending: (consumer) =>
            transport ? transport.pending(consumer) : Promise.reject(new Error('not connected')),
        },
        consumers: (options.consumers ?? []).map((spec) => spec.consumer),
      })
    : undefined;
  let wakeUp: () => void = () => undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const pruning =
    options.inbox && options.consumers?.length ? startPruning(options.inbox) : undefined;

  /** Deletes old inbox rows now and every hour; needs no broker. */
  function startPruning(pool: Pool): NodeJS.Timeout {
    const prune = () => {
      pruneInbox(pool, INBOX_RETENTION_MS)
        .then((deleted) => {
          if (deleted > 0) logger.info({ deleted }, 'events: old inbox rows pruned');
        })
        .catch((error: unknown) =>
          logger.warn(
            { err: errorMessage(error) },
            'events: pruning the inbox failed; retried in an hour',
          ),
        );
    };
    prune();
    return setInterval(prune, INBOX_PRUNE_EVERY_MS).unref();
  }

  const backoff = (attempt: number) =>
    Math.min(
      options.reconnect?.maxMs ?? 10_000,
      (options.reconnect?.initialMs ?? 500) * 2 ** attempt,
    );

  /**
   * Connects, starts the relay and subscribes every consumer; on any failure, closes what it opened
   * and starts again after a backoff, until it works or the service stops. A broker that blips
   * right after the connection (a subscribe failing) is one more retry, not a rejection nobody
   * awaits (which would end the process).
   */
  async function run(): Promise<void> {
    for (let attempt = 0; !stopped; attempt++) {
      let connected: Transport | undefined;
      try {
        connected = await connectTransport(options.settings, {
          name: options.service,
          serverUrl: options.serverUrl,
        });
        if (stopped) break;
        await subscribeAll(connected);
        if (stopped) break;
        transport = connected;
        if (options.outbox) relay = startOutboxRelay(options.outbox, connected);
        logger.info(
          {
            transport: connected.name,
            relay: Boolean(options.outbox),
            consumers: (options.consumers ?? []).map((spec) => spec.consumer),
          },
          'events: connected',
        );
        return;
      } catch (error) {
        await abandon(connected);
        connected = undefined;
        const delay = backoff(attempt);
        logger.warn(
          {
            err: errorMessage(error),
            transport: options.settings.EVENTS_TRANSPORT,
            retryInMs: delay,
          },
          'events: cannot connect to the broker (or subscribe) yet; events wait in the outbox',
        );
        await pause(delay);
      } finally {
        // Stopped while connecting or subscribing: nothing of this attempt is kept.
        if (stopped && transport !== connected) await abandon(connected);
      }
    }
  }

  function startOutboxRelay(pool: Pool, connected: Transport): Relay {
    return startRelay({
      pool,
      transport: connected,
      lockName: `outbox-relay-${options.service}`,
      retainSentMs: options.settings.OUTBOX_RETAIN_SENT_MS ?? 0,
      onError: (error, envelope) =>
        logger.warn(
          { err: errorMessage(error), eventId: envelope?.id, type: envelope?.type },
          'events: publishing from the outbox failed; it will be retried',
        ),
    });
  }

  /** Drops a failed attempt's subscriptions and connection (close stops the subscriptions too). */
  async function abandon(connected: Transport | undefined): Promise<void> {
    subscriptions.length = 0;
    await connected?.close().catch(() => undefined);
  }

  async function subscribeAll(connected: Transport): Promise<void> {
    for (const spec of options.consumers ?? []) {
      subscriptions.push(
        await connected.subscribe(
          spec.consumer,
          spec.types.map((type) => subjectOf(type, connected.prefix)),
          spec.handler,
          {
            ...spec.options,
            onError: (error, delivery) => {
              logger.warn(
                {
                  err: errorMessage(error),
                  consumer: spec.consumer,
                  eventId: delivery.envelope.id,
                  type: delivery.envelope.type,
                  attempt: delivery.attempt,
                },
                'events: a handler failed; the event will be delivered again',
              );
              spec.options?.onError?.(error, delivery);
            },
            onDeadLetter: (deadLetter) => {
              logger.error(
                {
                  consumer: deadLetter.consumer,
                  eventId: deadLetter.envelope.id,
                  type: deadLetter.envelope.type,
                  attempts: deadLetter.attempts,
                  err: deadLetter.error,
                },
                `events: dead-lettered after ${deadLetter.attempts} attempts (replay: pnpm events:replay ${deadLetter.consumer} ${deadLetter.envelope.id})`,
              );
              metrics?.onDeadLetter(deadLetter);
              spec.options?.onDeadLetter?.(deadLetter);
              options.onDeadLetter?.(deadLetter);
            },
          },
        ),
      );
    }
  }

  // Never rejects: run() catches every failure, and this is the last net for a bug in it.
  const started = run().catch((error: unknown) =>
    logger.error({ err: errorMessage(error) }, 'events: could not start'),
  );

  return {
    get transport() {
      return transport;
    },
    started,
    async stop() {
      stopped = true;
      clearInterval(pruning);
      wakeUp();
      await started.catch(() => undefined);
      await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      await relay?.stop();
      await transport?.close();
    },
  };
}
