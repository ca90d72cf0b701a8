import type { Envelope } from './envelope';

/**
 * The port every service talks to; NATS JetStream (./nats) and PostgreSQL (./postgres) implement
 * it, and both pass the same contract suite (test/transport-contract.ts).
 *
 * Guarantees, whichever transport:
 * - publish resolves only once the broker holds the event durably; publishing an id it already
 *   holds stores nothing new (`duplicate: true`);
 * - each durable consumer (a name) gets its own copy of every event on its subjects, at least once;
 * - a delivery is acknowledged only by its handler resolving; one that throws, or whose consumer
 *   dies before answering, is delivered again (after a backoff, or once `ackWaitMs` has passed);
 * - the handler is told which attempt this is (1 for the first delivery);
 * - for one consumer, the events of one aggregate are handled one at a time, in the order they
 *   were published: an event waits until the one before it was acknowledged or dead-lettered;
 * - after `maxAttempts` failed attempts an event goes to the consumer's dead letters, where it can
 *   be listed and replayed (delivered again, to that consumer only); a handler that throws a
 *   permanent error (`permanentError`) sends it there at once, since retrying cannot help.
 */
export interface Transport {
  /** The transport's name, for logs: "nats" or "postgres". */
  readonly name: string;
  /** What every subject starts with (`events`, or a namespace's: see `connectTransport`). */
  readonly prefix: string;
  publish(envelope: Envelope): Promise<PublishResult>;
  /**
   * Several events at once, all or none, in this order (the relay's rounds): one transaction on
   * PostgreSQL instead of one per event. Optional: the relay publishes one by one without it.
   */
  publishMany?(envelopes: readonly Envelope[]): Promise<PublishResult[]>;
  subscribe(
    consumer: string,
    subjects: readonly string[],
    handler: Handler,
    options?: SubscribeOptions,
  ): Promise<Subscription>;
  /**
   * Events the consumer has not acknowledged yet (its lag: `consumer_lag_events`). 0 for a
   * consumer that does not exist.
   */
  pending(consumer: string): Promise<number>;
  /** The consumer's dead letters, oldest first. */
  deadLetters(consumer: string): Promise<DeadLetter[]>;
  /** Sends a dead letter back to its consumer (attempts start again from 1) and removes it. */
  replayDeadLetter(consumer: string, eventId: string): Promise<void>;
  /**
   * Stops every subscription without waiting for running handlers (what they did not acknowledge
   * is delivered again later) and closes the connections.
   */
  close(): Promise<void>;
}

export interface PublishResult {
  /** True when the broker already held an event with this id (nothing new was stored). */
  duplicate: boolean;
}

export interface Delivery {
  envelope: Envelope;
  subject: string;
  /** 1 on the first delivery, 2 on the first redelivery, ... */
  attempt: number;
}

/**
 * Resolving acknowledges the event; throwing asks for it again (or dead-letters it: after
 * `maxAttempts`, or at once for a permanent error).
 */
export type Handler = (delivery: Delivery) => Promise<void>;

export interface SubscribeOptions {
  /** Attempts before an event goes to the dead letters (default 5). */
  maxAttempts?: number;
  /** Backoff after a failed attempt: `initialMs * 2^(attempt-1)`, at most `maxMs`, jittered. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** A delivery not acknowledged within this time is delivered again (default 30 s). */
  ackWaitMs?: number;
  /** Called when an event is dead-lettered: count it (metric) and log it. */
  onDeadLetter?: (deadLetter: DeadLetter) => void;
  /** Called when a handler throws (before any retry or dead-lettering). */
  onError?: (error: unknown, delivery: Delivery) => void;
  /**
   * A live subscription, for per-process fan-out (each gateway replica needs every order event for
   * the streams it holds), instead of a durable consumer:
   * - it receives only the events published after `subscribe` resolved (nothing older);
   * - its broker-side state (the consumer and its undelivered events) is removed by `stop()`, and,
   *   if its process vanished without stopping, by the broker once it has been inactive for
   *   `LIVE_INACTIVE_MS` (so a fresh, unique consumer name per process is what the caller gives);
   * - if that happened while the process was merely cut off, the consumer is made again when the
   *   broker is back: the events in between are lost, which is what "live" means.
   * Within its life it keeps every other guarantee (acknowledgement, retries, per-aggregate order,
   * dead letters until it is removed).
   */
  live?: boolean;
}

/** How long a live consumer may go unseen before the broker removes it (see `live`). */
export const LIVE_INACTIVE_MS = 30_000;

export interface Subscription {
  /** Stops taking new deliveries and waits for the running handlers to finish. */
  stop(): Promise<void>;
}

export interface DeadLetter {
  consumer: string;
  envelope: Envelope;
  subject: string;
  attempts: number;
  /** The last error's message. */
  error: string;
  deadAt: Date;
}

export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_ACK_WAIT_MS = 30_000;

/** The delay before attempt `attempt + 1`, after attempt `attempt` failed (full jitter on half). */
export function backoffMs(
  attempt: number,
  backoff: SubscribeOptions['backoff'] = {},
  random: () => number = Math.random,
): number {
  const initial = backoff.initialMs ?? 500;
  const max = backoff.maxMs ?? 60_000;
  const exponential = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}

/** A consumer name that is safe as a JetStream durable name and in SQL: letters, digits, - and _. */
export function checkConsumerName(consumer: string): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(consumer)) {
    throw new Error(
      `consumer name "${consumer}" must be 1 to 64 letters, digits, "-" or "_" (it names a durable consumer)`,
    );
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * An error no retry can fix (the event cannot be decoded, names something invalid, is of a type the
 * consumer does not handle): thrown by a handler, the event is dead-lettered at once instead of
 * after `maxAttempts`. Everything else is taken as transient (a database restarting) and retried.
 */
export class PermanentEventError extends Error {
  override readonly name = 'PermanentEventError';
}

/** A `PermanentEventError` with `message` (and the error that caused it, if any). */
export function permanentError(message: string, cause?: unknown): PermanentEventError {
  return new PermanentEventError(message, cause === undefined ? undefined : { cause });
}

/** True for an error thrown as permanent (see `PermanentEventError`), whatever realm made it. */
export function isPermanent(error: unknown): boolean {
  return (
    error instanceof PermanentEventError ||
    (error instanceof Error && error.name === 'PermanentEventError')
  );
}
