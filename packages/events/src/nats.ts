import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope';
import { EVENTS_PREFIX, subjectOf } from './subjects';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_ATTEMPTS,
  LIVE_INACTIVE_MS,
  backoffMs,
  checkConsumerName,
  errorMessage,
  isPermanent,
  type DeadLetter,
  type Delivery,
  type Handler,
  type PublishResult,
  type SubscribeOptions,
  type Subscription,
  type Transport,
} from './transport';

/**
 * The production transport: NATS JetStream.
 *
 * - One stream (default `EVENTS`) captures `events.>`, file storage, with a duplicate window: the
 *   event id is the message id (`Nats-Msg-Id`), so a re-sent event within the window is stored once
 *   and the publisher is told `duplicate: true`. Publishing resolves on the stream's PubAck, sent
 *   once the message is stored.
 * - Each consumer name is a durable pull consumer with explicit ack, `ack_wait` as configured and
 *   `max_ack_pending = 1`: one event is outstanding at a time, so the stream's order (which the
 *   relay keeps per aggregate) is the order of handling, and an event that failed holds back the
 *   ones after it until it is acknowledged or dead-lettered. (Stricter than per aggregate; partition
 *   subjects by aggregate when one consumer must go faster.) A handler that throws gets a `nak`
 *   with the backoff as delay; one that never answers (its process died) is redelivered by the
 *   server after `ack_wait`. The attempt is the server's delivery count.
 * - After `maxAttempts` the event is published to the dead-letter stream (`<stream>_DEAD`,
 *   subject `<prefix>_dead.<consumer>`, with the attempts and the error in headers) and terminated
 *   (`term`) in the consumer. Replaying publishes it again on `<prefix>.replay.<consumer>`, which
 *   only that consumer reads, and deletes it from the dead letters.
 * - A live subscription's consumer delivers only new events (`DeliverPolicy.New`) and has an
 *   `inactive_threshold`: the server deletes it once no pull request has come for that long (its
 *   process is gone). `stop()` deletes it at once. A subscription that finds its consumer gone
 *   (cut off for longer than the threshold) makes it again.
 */
export interface NatsTransportOptions {
  /** NATS server(s), default nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** The stream's name (default "EVENTS"). */
  stream?: string;
  /** Subject prefix (default "events"; tests use their own, with their own stream). */
  prefix?: string;
  /** The de-duplication window (default 2 minutes; longer than any relay retry gap). */
  duplicateWindowMs?: number;
  /** How long the stream keeps events (default 7 days). */
  maxAgeMs?: number;
  /** Connection name shown by the server. */
  name?: string;
  /** When the server removes a live consumer nobody pulls from (default `LIVE_INACTIVE_MS`). */
  liveInactiveMs?: number;
  /**
   * Servers holding a copy of each stream (the event stream and its dead letters), 1 to 5: 3 on a
   * clustered production NATS, so the events survive the loss of a server. A stream is created with
   * 1 when unset, and an existing one keeps what it has (a CLI run without the setting must not
   * shrink production's streams). More than 1 fails on a single server.
   */
  replicas?: number;
}

const nanos = (ms: number) => ms * 1_000_000;

/** How long a publish waits for a lost connection to come back before failing. */
const PUBLISH_WAIT_MS = 5000;

async function waitAtMost(promise: Promise<void>, ms: number, failure: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(failure)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Names the stream and its replicas: "replicas > 1 not supported" alone says neither. */
function streamError(verb: string, stream: string, replicas: number, cause: unknown): Error {
  return new Error(
    `cannot ${verb} stream ${stream} with ${replicas} replica(s): ${errorMessage(cause)}`,
    { cause },
  );
}

function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.status === 404;
}

/** The server supports several filter subjects per consumer (NATS 2.10+). */
function supportsFilterSubjects(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 10);
}

class NatsTransport implements Transport {
  readonly name = 'nats';
  private readonly subscriptions = new Set<NatsSubscription>();
  private closed = false;
  readonly js: JetStreamClient;

  constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    private readonly options: NatsTransportOptions,
  ) {
    this.js = jetstream(nc);
    void this.watchConnection();
  }

  /** Set while the connection is down, resolved once it is back (see publish). */
  private outage: { back: Promise<void>; resolve(): void } | undefined;

  private async watchConnection(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect' && !this.outage) {
        let resolve!: () => void;
        const back = new Promise<void>((done) => (resolve = done));
        this.outage = { back, resolve };
      } else if (status.type === 'reconnect') {
        this.outage?.resolve();
        this.outage = undefined;
      }
    }
    this.outage?.resolve(); // closed: publish fails on the closed connection
  }

  get stream(): string {
    return this.options.stream ?? 'EVENTS';
  }
  get deadStream(): string {
    return `${this.stream}_DEAD`;
  }
  get prefix(): string {
    return this.options.prefix ?? EVENTS_PREFIX;
  }
  deadSubject(consumer: string): string {
    return `${this.prefix}_dead.${consumer}`;
  }
  replaySubject(consumer: string): string {
    return `${this.prefix}.replay.${consumer}`;
  }

  /** Creates the streams, or brings their settings up to date (replicas: see the options). */
  async start(): Promise<void> {
    const streams = [
      {
        name: this.stream,
        subjects: [`${this.prefix}.>`],
        duplicate_window: nanos(this.options.duplicateWindowMs ?? 120_000),
        max_age: nanos(this.options.maxAgeMs ?? 7 * 24 * 3600_000),
      },
      {
        name: this.deadStream,
        subjects: [`${this.prefix}_dead.>`],
        duplicate_window: nanos(this.options.duplicateWindowMs ?? 120_000),
        max_age: 0,
      },
    ];
    for (const config of streams) {
      const existing = await this.jsm.streams.info(config.name).catch((error: unknown) => {
        if (isNotFound(error)) return undefined;
        throw error;
      });
      if (existing) {
        const replicas = this.options.replicas ?? existing.config.num_replicas;
        await this.jsm.streams
          .update(config.name, { ...config, num_replicas: replicas })
          .catch((error: unknown) => {
            throw streamError('update', config.name, replicas, error);
          });
        continue;
      }
      const replicas = this.options.replicas ?? 1;
      try {
        await this.jsm.streams.add({ ...config, num_replicas: replicas });
      } catch (error) {
        // Another process created it at the same moment.
        await this.jsm.streams.info(config.name).catch(() => {
          throw streamError('create', config.name, replicas, error);
        });
      }
    }
  }

  async publish(envelope: Envelope): Promise<PublishResult> {
    const subject = subjectOf(envelope.type, this.prefix);
    // nats.js discards what is written while it reconnects (each dial attempt clears its buffer),
    // so a publish sent during an outage only times out, possibly seconds after the server is
    // back, and the relay then backs off on top: a 20 s outage's backlog took over 10 s to flow
    // after recovery (test/faults.test.ts). A publish waits for the connection instead.
    if (this.outage) await waitAtMost(this.outage.back, PUBLISH_WAIT_MS, 'NATS is unreachable');
    const ack = await this.js.publish(subject, encodeEnvelope(envelope), {
      msgID: envelope.id,
      headers: traceHeaders(envelope),
    });
    return { duplicate: ack.duplicate };
  }

  async subscribe(
    consumer: string,
    subjects: readonly string[],
    handler: Handler,
    options: SubscribeOptions = {},
  ): Promise<Subscription> {
    checkConsumerName(consumer);
    if (subjects.length === 0) throw new Error('subscribe needs at least one subject');
    const wanted = new Set([...subjects, this.replaySubject(consumer)]);
    const ackWaitMs = options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    const live = options.live ?? false;
    // NATS 2.9 (the CI machines) takes one filter subject per consumer: there the consumer reads the
    // whole stream and skips (acknowledges) what it did not subscribe to.
    const filter = supportsFilterSubjects(this.nc.info?.version ?? '0')
      ? { filter_subjects: [...wanted] }
      : { filter_subject: `${this.prefix}.>` };
    const ensureConsumer = async (): Promise<Consumer> => {
      try {
        await this.jsm.consumers.info(this.stream, consumer);
      } catch (error) {
        if (!isNotFound(error)) throw error;
        await this.jsm.consumers.add(this.stream, {
          durable_name: consumer,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: live ? DeliverPolicy.New : DeliverPolicy.All,
          ack_wait: nanos(ackWaitMs),
          max_ack_pending: 1,
          max_deliver: -1, // dead-lettering is ours, at maxAttempts (see handle)
          ...(live
            ? { inactive_threshold: nanos(this.options.liveInactiveMs ?? LIVE_INACTIVE_MS) }
            : {}),
          ...filter,
        });
      }
      return this.js.consumers.get(this.stream, consumer);
    };
    const subscription = new NatsSubscription(
      this,
      await ensureConsumer(),
      live ? ensureConsumer : undefined,
      consumer,
      wanted,
      handler,
      options,
    );
    this.subscriptions.add(subscription);
    subscription.start();
    return {
      stop: async () => {
        await subscription.stop();
        this.subscriptions.delete(subscription);
        if (live) await this.deleteConsumer(consumer);
      },
    };
  }

  private async deleteConsumer(consumer: string): Promise<void> {
    try {
      await this.jsm.consumers.delete(this.stream, consumer);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /**
   * Not yet delivered plus delivered and not acknowledged. On NATS 2.9 the consumer reads the whole
   * stream (see subscribe), so this counts events of other subjects it has not skipped yet too.
   */
  async pending(consumer: string): Promise<number> {
    try {
      const info = await this.jsm.consumers.info(this.stream, consumer);
      return info.num_pending + info.num_ack_pending;
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw error;
    }
  }

  async deadLetters(consumer: string): Promise<DeadLetter[]> {
    return (await this.deadMessages(consumer)).map(({ deadLetter }) => deadLetter);
  }

  private async deadMessages(consumer: string): Promise<{ seq: number; deadLetter: DeadLetter }[]> {
    const found: { seq: number; deadLetter: DeadLetter }[] = [];
    const subject = this.deadSubject(consumer);
    // Dead letters are few: read the dead-letter stream's range and keep this consumer's.
    const { state } = await this.jsm.streams.info(this.deadStream);
    for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
      let message;
      try {
        message = await this.jsm.streams.getMessage(this.deadStream, { seq });
      } catch (error) {
        if (isNotFound(error)) continue; // deleted (replayed)
        throw error;
      }
      if (!message || message.subject !== subject) continue;
      found.push({
        seq: message.seq,
        deadLetter: {
          consumer,
          envelope: decodeEnvelope(message.data),
          subject: message.header.get('Events-Subject'),
          attempts: Number(message.header.get('Events-Attempts')),
          error: message.header.get('Events-Error'),
          deadAt: message.time,
        },
      });
    }
    return found;
  }

  async replayDeadLetter(consumer: string, eventId: string): Promise<void> {
    const dead = (await this.deadMessages(consumer)).find(
      ({ deadLetter }) => deadLetter.envelope.id === eventId,
    );
    if (!dead)
      throw new Error(`consumer "${consumer}" has no dead letter with event id ${eventId}`);
    await this.js.publish(this.replaySubject(consumer), encodeEnvelope(dead.deadLetter.envelope), {
      msgID: `replay:${consumer}:${dead.seq}`,
      headers: traceHeaders(dead.deadLetter.envelope),
    });
    await this.jsm.streams.deleteMessage(this.deadStream, dead.seq, false);
  }

  async deadLetter(consumer: string, message: JsMsg, deadLetter: DeadLetter): Promise<void> {
    const h = headers();
    h.set('Events-Consumer', consumer);
    h.set('Events-Subject', deadLetter.subject);
    h.set('Events-Attempts', String(deadLetter.attempts));
    h.set('Events-Error', deadLetter.error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
    await this.js.publish(this.deadSubject(consumer), encodeEnvelope(deadLetter.envelope), {
      msgID: `${consumer}:${message.seq}`,
      headers: h,
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of this.subscriptions) subscription.abandon();
    this.subscriptions.clear();
    await this.nc.close();
  }
}

function traceHeaders(envelope: Envelope) {
  const h = headers();
  h.set('Events-Type', envelope.type);
  h.set('Events-Aggregate-Id', envelope.aggregateId);
  if (envelope.traceparent) h.set('traceparent', envelope.traceparent);
  if (envelope.tracestate) h.set('tracestate', envelope.tracestate);
  return h;
}

class NatsSubscription {
  private stopped = false;
  /** Stopped at once by close(): nothing more is acknowledged or put back. */
  private abandoned = false;
  private loop: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private readonly maxAttempts: number;

  constructor(
    private readonly transport: NatsTransport,
    private consumer: Consumer,
    /** Makes the consumer again if it is gone (live subscriptions only; see NatsTransport). */
    private readonly recreate: (() => Promise<Consumer>) | undefined,
    private readonly name: string,
    private readonly wanted: ReadonlySet<string>,
    private readonly handler: Handler,
    private readonly options: SubscribeOptions,
  ) {
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  }

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let first = true;
    while (!this.stopped) {
      try {
        if (this.recreate && !first) this.consumer = await this.recreate();
        first = false;
        // One message at a time (the consumer allows one outstanding anyway). A live consumer
        // removed by the server ends the loop, to be made again, instead of being waited for.
        const messages = await this.consumer.consume({
          max_messages: 1,
          expires: 5000,
          ...(this.recreate ? { abort_on_missing_resource: true } : {}),
        });
        this.messages = messages;
        if (this.stopped) await messages.close();
        for await (const message of messages) {
          if (this.stopped) break;
          await this.handle(message).catch(() => undefined); // not acknowledged: redelivered
        }
      } catch {
        // The consumer or the connection went away; try again unless stopping.
      }
      this.messages = undefined;
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  private async handle(message: JsMsg): Promise<void> {
    if (!this.wanted.has(message.subject)) {
      await message.ackAck(); // another consumer's replay, or a subject not ours (NATS 2.9)
      return;
    }
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(message.data);
    } catch (error) {
      // Not an envelope (published by something else on our subjects): it would hold the consumer
      // back forever, so it is terminated and reported, not retried.
      message.term();
      this.options.onError?.(
        new Error(`not an event envelope on ${message.subject}`, { cause: error }),
        {
          envelope: {
            id: message.headers?.get('Nats-Msg-Id') ?? '',
            type: '',
            aggregateId: '',
            occurredAt: undefined,
            traceparent: '',
            tracestate: '',
            payload: Buffer.alloc(0),
            source: '',
            sequence: 0,
          },
          subject: message.subject,
          attempt: message.info.deliveryCount,
        },
      );
      return;
    }
    const delivery: Delivery = {
      envelope,
      subject: message.subject.startsWith(`${this.transport.prefix}.replay.`)
        ? subjectOf(envelope.type, this.transport.prefix)
        : message.subject,
      attempt: message.info.deliveryCount,
    };
    try {
      await this.handler(delivery);
    } catch (error) {
      if (this.abandoned) return;
      this.options.onError?.(error, delivery);
      // A permanent error is dead-lettered at once: retrying would only delay the events behind it.
      if (delivery.attempt >= this.maxAttempts || isPermanent(error)) {
        const deadLetter: DeadLetter = {
          consumer: this.name,
          envelope,
          subject: delivery.subject,
          attempts: delivery.attempt,
          error: errorMessage(error),
          deadAt: new Date(),
        };
        // Stored in the dead letters before it leaves the consumer: a crash in between
        // dead-letters it twice (de-duplicated by message id), never zero times.
        await this.transport.deadLetter(this.name, message, deadLetter);
        // No reason text: NATS 2.9 ignores a `+TERM` that carries one.
        message.term();
        this.options.onDeadLetter?.(deadLetter);
        return;
      }
      message.nak(backoffMs(delivery.attempt, this.options.backoff));
      return;
    }
    if (this.abandoned) return;
    await message.ackAck();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    await this.loop;
  }

  abandon(): void {
    this.stopped = true;
    this.abandoned = true;
    // Its pull requests and heartbeat timers go with it; a running handler is left behind.
    this.messages?.stop();
  }
}

/** Connects to NATS and makes sure the event streams exist. */
export async function createNatsTransport(
  options: NatsTransportOptions = {},
): Promise<Transport & { readonly nc: NatsConnection; readonly jsm: JetStreamManager }> {
  const servers = options.servers ?? 'nats://127.0.0.1:4222';
  let nc: NatsConnection;
  try {
    nc = await connect({ servers, name: options.name ?? 'events', maxReconnectAttempts: -1 });
  } catch (error) {
    throw new Error(
      `cannot reach NATS at ${String(servers)} (${errorMessage(error)}): start a nats-server with JetStream (-js)`,
      { cause: error },
    );
  }
  try {
    const transport = new NatsTransport(nc, await jetstreamManager(nc), options);
    await transport.start();
    return transport;
  } catch (error) {
    await nc.close().catch(() => undefined);
    throw error;
  }
}
