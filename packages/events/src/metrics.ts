import { Counter, Gauge, type Registry } from 'prom-client';
import { outboxBacklog, type Queryable } from './outbox';
import type { DeadLetter, Transport } from './transport';

/** How long a scrape waits for the database or the broker before answering the last value. */
export const DEFAULT_READ_TIMEOUT_MS = 1_000;

export interface EventsMetricsOptions {
  /** The service's own pool, whose database holds its outbox: the outbox gauges. */
  outbox?: Queryable;
  /**
   * The transport its consumers subscribe through: their lag. Only `pending` is used, so a
   * transport still connecting can be given as `{ pending: (consumer) => ... }`.
   */
  transport?: Pick<Transport, 'pending'>;
  /** The service's consumer names: each gets a `consumer_lag_events` and a `dead_letters_total`. */
  consumers?: readonly string[];
  /** Default DEFAULT_READ_TIMEOUT_MS. */
  readTimeoutMs?: number;
}

export interface EventsMetrics {
  /** Counts a dead letter; pass it as (or call it from) the subscription's `onDeadLetter`. */
  onDeadLetter(deadLetter: DeadLetter): void;
}

/**
 * The events metrics of a service, on its registry (deploy/observability's dashboards and alerts
 * read these names):
 *
 * - `outbox_backlog_events`, `outbox_oldest_unsent_seconds`: `outboxBacklog(outbox)`, read when
 *   scraped (one query on the unsent rows' index entries);
 * - `consumer_lag_events{consumer}`: `transport.pending(consumer)`, read when scraped;
 * - `dead_letters_total{consumer}`: counted by `onDeadLetter`.
 *
 * A scrape while the database or broker is down or hanging still answers, within `readTimeoutMs`,
 * with the last values read (0 before any): a metrics endpoint that fails with the database would
 * turn one outage into two alerts (TargetDown beside the real one) and blank every other panel.
 */
export function eventsMetrics(registry: Registry, options: EventsMetricsOptions): EventsMetrics {
  const timeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const consumers = options.consumers ?? [];
  if (options.outbox) outboxGauges(registry, options.outbox, timeoutMs);
  if (options.transport && consumers.length) {
    lagGauge(registry, options.transport, consumers, timeoutMs);
  }
  return { onDeadLetter: deadLetterCounter(registry, consumers) };
}

function outboxGauges(registry: Registry, outbox: Queryable, timeoutMs: number): void {
  const backlog = lastKnown(
    () => outboxBacklog(outbox),
    { events: 0, oldestUnsentSeconds: 0 },
    timeoutMs,
  );
  // Both gauges are collected in one scrape: the second reuses the first's read.
  new Gauge({
    name: 'outbox_backlog_events',
    help: 'Events in the outbox not yet confirmed by the broker.',
    registers: [registry],
    async collect() {
      this.set((await backlog()).events);
    },
  });
  new Gauge({
    name: 'outbox_oldest_unsent_seconds',
    help: 'How long the oldest unsent outbox event has waited, in seconds (0 when none).',
    registers: [registry],
    async collect() {
      this.set((await backlog()).oldestUnsentSeconds);
    },
  });
}

function lagGauge(
  registry: Registry,
  transport: Pick<Transport, 'pending'>,
  consumers: readonly string[],
  timeoutMs: number,
): void {
  const pending = consumers.map(
    (consumer) => [consumer, lastKnown(() => transport.pending(consumer), 0, timeoutMs)] as const,
  );
  new Gauge({
    name: 'consumer_lag_events',
    help: 'Events delivered to a consumer and not yet acknowledged, by consumer.',
    labelNames: ['consumer'],
    registers: [registry],
    async collect() {
      const values = await Promise.all(pending.map(([, read]) => read()));
      pending.forEach(([consumer], index) => this.set({ consumer }, values[index]!));
    },
  });
}

function deadLetterCounter(
  registry: Registry,
  consumers: readonly string[],
): (deadLetter: DeadLetter) => void {
  const counter = new Counter({
    name: 'dead_letters_total',
    help: 'Events a consumer gave up on after its attempts (each can be replayed), by consumer.',
    labelNames: ['consumer'],
    registers: [registry],
  });
  // A series per consumer from the start, at 0: `increase()` sees the first dead letter as one.
  const children = new Map(consumers.map((consumer) => [consumer, counter.labels({ consumer })]));
  for (const child of children.values()) child.inc(0);
  return ({ consumer }) => {
    let child = children.get(consumer);
    if (!child) {
      child = counter.labels({ consumer });
      children.set(consumer, child);
    }
    child.inc();
  };
}

/**
 * `read` as a scrape calls it: its answer if it comes within `timeoutMs`, else the last answer
 * (`initial` before any); never a rejection. A read still running when the next scrape comes is
 * waited for again rather than started again, so a database that hangs holds one query of the
 * pool, not one per scrape; the value is updated whenever it ends.
 */
export function lastKnown<T>(
  read: () => Promise<T>,
  initial: T,
  timeoutMs: number,
): () => Promise<T> {
  let last = initial;
  let running: Promise<void> | undefined;
  return async () => {
    running ??= read()
      .then(
        (value) => {
          last = value;
        },
        () => undefined,
      )
      .finally(() => {
        running = undefined;
      });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      running,
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return last;
  };
}
