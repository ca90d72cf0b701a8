import { Client, type Pool, type PoolClient } from 'pg';
import { ensureDatabase } from '@repo/database/admin';
import { createPool } from '@repo/database/pool';
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope';
import { EVENTS_PREFIX, subjectOf } from './subjects';
import { coalescedNotifier } from './wake';
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
 * The local transport: a broker database of its own (by default `events`, on the same server as the
 * services' databases but belonging to none of them), with four tables this transport creates on
 * start (idempotent DDL under an advisory lock):
 *
 * - `events_messages`: every published event once (`event_id` unique: the de-duplication), in
 *   publication order (`seq`);
 * - `events_consumers`: the durable consumers and their subjects;
 * - `events_deliveries`: one row per (consumer, event) not yet acknowledged, with its attempts, when
 *   it may be delivered next (backoff) and until when it is leased to a handler (ack wait);
 * - `events_dead_letters`: what a consumer gave up on, until replayed.
 *
 * Publishing inserts the message and its deliveries for every consumer of its subject in one
 * transaction (durable once COMMIT returns: the only one that waits for the disk, see below), then
 * a NOTIFY wakes the consumers (`publishMany` does this for a whole relay round at once). A consumer claims the
 * head of each aggregate's queue (the lowest `seq` of the aggregate among its deliveries) that is
 * neither leased nor backing off, with `FOR UPDATE SKIP LOCKED` so several replicas never claim the
 * same row, and leases it for `ackWaitMs`. Acknowledging deletes the delivery; failing puts it back
 * with a backoff. Since only an aggregate's head can be claimed, its next event waits until the head
 * is acknowledged or dead-lettered: per-aggregate order for any number of replicas. A handler that
 * dies loses its lease when `ackWaitMs` passes, and the event is delivered again.
 *
 * A live consumer has an `expires_at` that its subscription pushes forward (a heartbeat every third
 * of `liveInactiveMs`) and starts with no backlog. Publishing skips expired consumers; `stop()`
 * deletes the consumer, and every transport deletes the expired ones (with their deliveries, by
 * cascade) every third of `liveInactiveMs`, which removes those of processes that vanished.
 *
 * Cost. Everything but publishing is bookkeeping of at-least-once delivery (claims, acks, retries,
 * heartbeats), which the transport's connections commit with `synchronous_commit = off`: a crash
 * of the broker database can forget the last fraction of a second of it, and a forgotten ack or
 * lease only means an event is delivered again, which consumers' inboxes absorb. Publishing turns
 * it back on for its transaction. The NOTIFY is sent after COMMIT, at most one in flight per
 * process: inside the transaction it made every COMMIT take a lock global to the database. Both
 * came from S3 (`pnpm bench --scenario b1,s3`): the broker's commits waited on the disk and on
 * that lock beside the order service's, on the same PostgreSQL server.
 */
export interface PostgresTransportOptions {
  /** The broker database's connection string (created when missing, see `createDatabase`). */
  url: string;
  /** Create the database when it does not exist (default true). */
  createDatabase?: boolean;
  /** Subject prefix (default "events"; tests use their own). */
  prefix?: string;
  /** How often a consumer looks for work when no NOTIFY woke it (default 1 s). */
  pollMs?: number;
  /** Handlers running at once per subscription, each on a different aggregate (default 8). */
  concurrency?: number;
  /** Pool size (default 5). */
  maxConnections?: number;
  /**
   * How long the broker keeps an event (default 7 days, JetStream's max age here): older ones are
   * deleted, hourly, with their unacknowledged deliveries, unless dead-lettered (dead letters stay
   * until replayed, as in JetStream's dead-letter stream). It is also the de-duplication window.
   */
  maxAgeMs?: number;
  /** When a live consumer whose subscription stopped refreshing it expires (default `LIVE_INACTIVE_MS`). */
  liveInactiveMs?: number;
}

const NOTIFY_CHANNEL = 'events_published';
/** Serialises the DDL of transports starting at once, and consumer creation against publishing. */
const DDL_LOCK = 7_262_001;
const FANOUT_LOCK = 7_262_002;
/** Between attempts to open the LISTEN connection again (see keepListening). */
const RELISTEN_BACKOFF = { initialMs: 100, maxMs: 5000 };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events_messages (
  seq          BIGSERIAL PRIMARY KEY,
  event_id     TEXT NOT NULL UNIQUE,
  subject      TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  envelope     BYTEA NOT NULL,
  published_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_messages_subject ON events_messages (subject, seq);
CREATE TABLE IF NOT EXISTS events_consumers (
  name       TEXT PRIMARY KEY,
  subjects   TEXT[] NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Live consumers only (NULL for durable ones); added after the table first shipped.
ALTER TABLE events_consumers ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
CREATE TABLE IF NOT EXISTS events_deliveries (
  consumer     TEXT NOT NULL REFERENCES events_consumers (name) ON DELETE CASCADE,
  seq          BIGINT NOT NULL REFERENCES events_messages (seq) ON DELETE CASCADE,
  aggregate_id TEXT NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  leased_until TIMESTAMPTZ,
  last_error   TEXT,
  PRIMARY KEY (consumer, seq)
);
CREATE INDEX IF NOT EXISTS events_deliveries_heads ON events_deliveries (consumer, aggregate_id, seq);
CREATE TABLE IF NOT EXISTS events_dead_letters (
  consumer   TEXT NOT NULL REFERENCES events_consumers (name) ON DELETE CASCADE,
  seq        BIGINT NOT NULL REFERENCES events_messages (seq) ON DELETE CASCADE,
  attempts   INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  dead_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, seq)
);
`;

/** Creates the broker tables (idempotent; safe when several processes start at once). */
export async function migrateBroker(pool: Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
    await client.query(SCHEMA);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

async function inTx<T>(
  pool: Pool,
  work: (client: PoolClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

interface ClaimedRow {
  seq: string;
  attempts: number;
  subject: string;
  envelope: Buffer;
}

// The heads of the consumer's aggregates that are due, leased for ack wait in the same statement.
const CLAIM = `
WITH heads AS (
  SELECT DISTINCT ON (aggregate_id) seq
  FROM events_deliveries
  WHERE consumer = $1
  ORDER BY aggregate_id, seq
), due AS (
  SELECT d.seq
  FROM events_deliveries d
  JOIN heads h ON h.seq = d.seq
  WHERE d.consumer = $1
    AND d.available_at <= now()
    AND (d.leased_until IS NULL OR d.leased_until <= now())
  ORDER BY d.seq
  LIMIT $2
  FOR UPDATE OF d SKIP LOCKED
)
UPDATE events_deliveries d
SET attempts = d.attempts + 1, leased_until = now() + make_interval(secs => $3::double precision / 1000)
FROM due, events_messages m
WHERE d.consumer = $1 AND d.seq = due.seq AND m.seq = d.seq
RETURNING d.seq, d.attempts, m.subject, m.envelope`;

class PostgresTransport implements Transport {
  readonly name = 'postgres';
  private readonly listeners = new Set<() => void>();
  private readonly subscriptions = new Set<PgSubscription>();
  /** The LISTEN connection, while it is open (see keepListening). */
  private listener: Client | undefined;
  private listening: Promise<void> | undefined;
  private endPause: (() => void) | undefined;
  private closed = false;

  constructor(
    readonly pool: Pool,
    private readonly options: PostgresTransportOptions,
  ) {}

  private pruneTimer: NodeJS.Timeout | undefined;
  private reapTimer: NodeJS.Timeout | undefined;

  async start(): Promise<void> {
    await migrateBroker(this.pool);
    // One LISTEN connection per transport wakes every subscription of this process.
    this.listening = this.keepListening(await this.listen());
    // The timers only once nothing can fail: a start that failed (its pool ended by the caller)
    // left them running on a dead pool, two more for every attempt of a reconnecting service.
    const prune = () => {
      this.pruneMessages(this.options.maxAgeMs ?? 7 * 24 * 3600_000).catch(() => undefined);
    };
    prune();
    this.pruneTimer = setInterval(prune, 3600_000).unref();
    const reap = () => {
      this.reapLiveConsumers().catch(() => undefined);
    };
    reap();
    this.reapTimer = setInterval(reap, this.liveInactiveMs / 3).unref();
  }

  /** A connection that LISTENs, with the promise of its end (whatever ends it). */
  private async listen(): Promise<{ client: Client; ended: Promise<void> }> {
    const client = new Client({
      connectionString: this.options.url,
      // A broker that accepts and never answers fails the attempt instead of holding it (and close).
      connectionTimeoutMillis: 10_000,
      // A connection the network dropped silently ends too (within minutes: TCP keepalive probes)
      // instead of listening to nothing forever.
      keepAlive: true,
      keepAliveInitialDelayMillis: 30_000,
    });
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    client.on('error', () => undefined); // the connection ends too: see keepListening
    client.on('notification', () => this.wakeAll());
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return { client, ended };
  }

  /**
   * Opens the LISTEN connection again, with backoff, whenever it ends (the broker database
   * restarted, the network dropped it), until the transport closes. Without this, subscriptions
   * were left to their polls for the rest of the process: one event a `pollMs` at best.
   */
  private async keepListening(listening: { client: Client; ended: Promise<void> }): Promise<void> {
    for (;;) {
      this.listener = listening.client;
      await listening.ended;
      this.listener = undefined;
      let attempt = 0;
      for (;;) {
        if (this.closed) return;
        await this.pause(backoffMs(++attempt, RELISTEN_BACKOFF));
        if (this.closed) return;
        try {
          listening = await this.listen();
          break;
        } catch {
          // still away: the next attempt waits longer
        }
      }
      if (this.closed) {
        await listening.client.end().catch(() => undefined);
        return;
      }
      // What was published while nobody listened woke no one.
      this.wakeAll();
    }
  }

  /** Waits `ms`, or less if the transport closes meanwhile. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.endPause = undefined;
        resolve();
      }, ms);
      this.endPause = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private wakeAll(): void {
    for (const wake of this.listeners) wake();
  }

  get prefix(): string {
    return this.options.prefix ?? EVENTS_PREFIX;
  }

  async publish(envelope: Envelope): Promise<PublishResult> {
    const [result] = await this.publishMany([envelope]);
    return result!;
  }

  async publishMany(envelopes: readonly Envelope[]): Promise<PublishResult[]> {
    if (envelopes.length === 0) return [];
    const inserted = await inTx(
      this.pool,
      async (client) => {
        await client.query('SELECT pg_advisory_xact_lock_shared($1)', [FANOUT_LOCK]);
        // In the given order (WITH ORDINALITY): `seq` is each aggregate's delivery order.
        const messages = await client.query<{ event_id: string }>(
          `WITH inserted AS (
             INSERT INTO events_messages (event_id, subject, aggregate_id, envelope)
             SELECT event_id, subject, aggregate_id, envelope
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
               WITH ORDINALITY AS e (event_id, subject, aggregate_id, envelope, n)
             ORDER BY n
             ON CONFLICT (event_id) DO NOTHING
             RETURNING seq, event_id, subject, aggregate_id
           ), fanned AS (
             INSERT INTO events_deliveries (consumer, seq, aggregate_id)
             SELECT c.name, i.seq, i.aggregate_id FROM inserted i
             JOIN events_consumers c
               ON i.subject = ANY (c.subjects) AND (c.expires_at IS NULL OR c.expires_at > now())
           )
           SELECT event_id FROM inserted`,
          [
            envelopes.map((envelope) => envelope.id),
            envelopes.map((envelope) => subjectOf(envelope.type, this.prefix)),
            envelopes.map((envelope) => envelope.aggregateId),
            envelopes.map((envelope) => Buffer.from(encodeEnvelope(envelope))),
          ],
        );
        return new Set(messages.rows.map((row) => row.event_id));
      },
      // Durable before the relay is told so (see the class comment: everything else is not).
      'BEGIN; SET LOCAL synchronous_commit = on',
    );
    if (inserted.size > 0) this.notifyPublished();
    return envelopes.map((envelope) => ({ duplicate: !inserted.has(envelope.id) }));
  }

  /** Wakes the consumers, after COMMIT; notifications asked for meanwhile fold into one more. */
  private readonly notifyPublished = coalescedNotifier(
    () => this.pool.query(`SELECT pg_notify('${NOTIFY_CHANNEL}', '')`),
    () => this.closed,
  );

  async subscribe(
    consumer: string,
    subjects: readonly string[],
    handler: Handler,
    options: SubscribeOptions = {},
  ): Promise<Subscription> {
    checkConsumerName(consumer);
    if (subjects.length === 0) throw new Error('subscribe needs at least one subject');
    const live = options.live ?? false;
    if (live) await this.createLiveConsumer(consumer, subjects);
    else await this.createDurableConsumer(consumer, subjects);
    const subscription = new PgSubscription(
      this,
      consumer,
      handler,
      options,
      live ? () => this.refreshLiveConsumer(consumer, subjects) : undefined,
    );
    this.subscriptions.add(subscription);
    subscription.start();
    return {
      stop: async () => {
        await subscription.stop();
        this.subscriptions.delete(subscription);
        if (live) await this.deleteConsumers('name = $1', [consumer]);
      },
    };
  }

  get liveInactiveMs(): number {
    return this.options.liveInactiveMs ?? LIVE_INACTIVE_MS;
  }

  /** A live consumer starts with nothing: only what is published from now on is delivered to it. */
  private async createLiveConsumer(consumer: string, subjects: readonly string[]): Promise<void> {
    await inTx(this.pool, async (client) => {
      // Waits for publications in flight: one that committed before this is not ours, one after is.
      await client.query('SELECT pg_advisory_xact_lock($1)', [FANOUT_LOCK]);
      const created = await client.query(
        `INSERT INTO events_consumers (name, subjects, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000))
         ON CONFLICT (name) DO NOTHING RETURNING name`,
        [consumer, subjects, this.liveInactiveMs],
      );
      if (!created.rowCount) {
        throw new Error(`consumer "${consumer}" exists: a live consumer needs a name of its own`);
      }
    });
  }

  /**
   * The live subscription's heartbeat: pushes its expiry forward, or, if it expired and was reaped
   * meanwhile (the database was away for longer than `liveInactiveMs`), makes it again.
   */
  private async refreshLiveConsumer(consumer: string, subjects: readonly string[]): Promise<void> {
    const refreshed = await this.pool.query(
      `UPDATE events_consumers
       SET expires_at = now() + make_interval(secs => $2::double precision / 1000)
       WHERE name = $1`,
      [consumer, this.liveInactiveMs],
    );
    if (!refreshed.rowCount) await this.createLiveConsumer(consumer, subjects);
  }

  /** Deletes the live consumers that expired, with their deliveries; returns how many. */
  async reapLiveConsumers(): Promise<number> {
    const expired = await this.pool.query(
      'SELECT 1 FROM events_consumers WHERE expires_at < now() LIMIT 1',
    );
    if (!expired.rowCount) return 0; // the usual case: no lock taken
    return this.deleteConsumers('expires_at < now()', []);
  }

  /**
   * Deletes consumers (and, by cascade, their deliveries) once no publication is in flight: one that
   * had read a consumer row would otherwise fail on its delivery's foreign key.
   */
  private async deleteConsumers(where: string, params: unknown[]): Promise<number> {
    return inTx(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [FANOUT_LOCK]);
      const result = await client.query(`DELETE FROM events_consumers WHERE ${where}`, params);
      return result.rowCount ?? 0;
    });
  }

  private async createDurableConsumer(
    consumer: string,
    subjects: readonly string[],
  ): Promise<void> {
    await inTx(this.pool, async (client) => {
      // Waits for publications in flight, so none falls between the consumer and its backfill.
      await client.query('SELECT pg_advisory_xact_lock($1)', [FANOUT_LOCK]);
      const created = await client.query(
        `INSERT INTO events_consumers (name, subjects) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING RETURNING name`,
        [consumer, subjects],
      );
      if (created.rowCount) {
        // A new durable consumer starts with every event its subjects hold (JetStream's
        // DeliverPolicy.All).
        await client.query(
          `INSERT INTO events_deliveries (consumer, seq, aggregate_id)
           SELECT $1, seq, aggregate_id FROM events_messages WHERE subject = ANY ($2)`,
          [consumer, subjects],
        );
      } else {
        const existing = await client.query<{ subjects: string[] }>(
          'SELECT subjects FROM events_consumers WHERE name = $1',
          [consumer],
        );
        const had = [...(existing.rows[0]?.subjects ?? [])].sort().join(',');
        if (had !== [...subjects].sort().join(',')) {
          throw new Error(
            `consumer "${consumer}" exists with subjects ${had}: a durable consumer keeps its subjects (use a new name)`,
          );
        }
      }
    });
  }

  onPublished(wake: () => void): () => void {
    this.listeners.add(wake);
    return () => this.listeners.delete(wake);
  }

  get concurrency(): number {
    return this.options.concurrency ?? 8;
  }

  get pollMs(): number {
    return this.options.pollMs ?? 1000;
  }

  async pending(consumer: string): Promise<number> {
    const result = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM events_deliveries WHERE consumer = $1',
      [consumer],
    );
    return result.rows[0]?.n ?? 0;
  }

  async deadLetters(consumer: string): Promise<DeadLetter[]> {
    const result = await this.pool.query<{
      subject: string;
      envelope: Buffer;
      attempts: number;
      last_error: string;
      dead_at: Date;
    }>(
      `SELECT m.subject, m.envelope, d.attempts, d.last_error, d.dead_at
       FROM events_dead_letters d JOIN events_messages m ON m.seq = d.seq
       WHERE d.consumer = $1 ORDER BY d.dead_at, d.seq`,
      [consumer],
    );
    return result.rows.map((row) => ({
      consumer,
      subject: row.subject,
      envelope: decodeEnvelope(row.envelope),
      attempts: row.attempts,
      error: row.last_error,
      deadAt: row.dead_at,
    }));
  }

  async replayDeadLetter(consumer: string, eventId: string): Promise<void> {
    await inTx(this.pool, async (client) => {
      const moved = await client.query(
        `WITH dead AS (
           DELETE FROM events_dead_letters d USING events_messages m
           WHERE d.consumer = $1 AND m.seq = d.seq AND m.event_id = $2
           RETURNING d.seq, m.aggregate_id
         )
         INSERT INTO events_deliveries (consumer, seq, aggregate_id)
         SELECT $1, seq, aggregate_id FROM dead`,
        [consumer, eventId],
      );
      if (!moved.rowCount) {
        throw new Error(`consumer "${consumer}" has no dead letter with event id ${eventId}`);
      }
      await client.query(`SELECT pg_notify('${NOTIFY_CHANNEL}', '')`);
    });
  }

  /** Deletes events older than `olderThanMs` that are not dead letters; returns how many. */
  async pruneMessages(olderThanMs: number): Promise<number> {
    const result = await this.pool.query(
      `DELETE FROM events_messages m
       WHERE m.published_at < now() - make_interval(secs => $1::double precision / 1000)
         AND NOT EXISTS (SELECT 1 FROM events_dead_letters d WHERE d.seq = m.seq)`,
      [olderThanMs],
    );
    return result.rowCount ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pruneTimer);
    clearInterval(this.reapTimer);
    for (const subscription of this.subscriptions) subscription.abandon();
    this.subscriptions.clear();
    this.endPause?.();
    await this.listener?.end().catch(() => undefined);
    await this.listening;
    await this.pool.end();
  }
}

class PgSubscription {
  private running = 0;
  private stopped = false;
  /** Stopped at once by close(): nothing more is acknowledged or put back. */
  private abandoned = false;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private again = false;
  private readonly inFlight = new Set<Promise<void>>();
  private unlisten: () => void = () => undefined;
  private readonly maxAttempts: number;
  private readonly ackWaitMs: number;

  constructor(
    private readonly transport: PostgresTransport,
    private readonly consumer: string,
    private readonly handler: Handler,
    private readonly options: SubscribeOptions,
    /** Keeps a live consumer from expiring (see PostgresTransport). */
    private readonly refresh: (() => Promise<void>) | undefined,
  ) {
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.ackWaitMs = options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
  }

  start(): void {
    this.unlisten = this.transport.onPublished(() => this.wake());
    const refresh = this.refresh;
    if (refresh) {
      this.heartbeat = setInterval(() => {
        refresh().catch(() => undefined); // the database is away: the next beat tries again
      }, this.transport.liveInactiveMs / 3);
    }
    this.wake();
  }

  /** Looks for work now (coalesced: one claim at a time, once more if woken meanwhile). */
  wake(): void {
    if (this.stopped) return;
    if (this.polling) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.polling = this.poll()
      .catch(() => undefined) // the database is away: the next poll tries again
      .finally(() => {
        this.polling = undefined;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.wake();
        } else {
          this.timer = setTimeout(() => this.wake(), this.transport.pollMs);
        }
      });
  }

  private async poll(): Promise<void> {
    const free = this.transport.concurrency - this.running;
    if (free <= 0) return;
    const claimed = await this.transport.pool.query<ClaimedRow>(CLAIM, [
      this.consumer,
      free,
      this.ackWaitMs,
    ]);
    const rows = [...claimed.rows].sort((a, b) => Number(a.seq) - Number(b.seq));
    for (const row of rows) {
      const handling = this.handle(row)
        .catch(() => undefined) // not acknowledged: delivered again once the lease expires
        .finally(() => {
          this.inFlight.delete(handling);
          this.running--;
          this.wake();
        });
      this.running++;
      this.inFlight.add(handling);
    }
    // A full batch may mean more is waiting.
    if (rows.length === free) this.again = true;
  }

  private async handle(row: ClaimedRow): Promise<void> {
    const delivery: Delivery = {
      envelope: decodeEnvelope(row.envelope),
      subject: row.subject,
      attempt: row.attempts,
    };
    const pool = this.transport.pool;
    try {
      await this.handler(delivery);
    } catch (error) {
      if (this.abandoned) return;
      this.options.onError?.(error, delivery);
      const message = errorMessage(error);
      // A permanent error is dead-lettered at once: retrying would only delay the events behind it.
      if (delivery.attempt >= this.maxAttempts || isPermanent(error)) {
        const moved = await inTx(pool, async (client) => {
          const removed = await client.query(
            'DELETE FROM events_deliveries WHERE consumer = $1 AND seq = $2 AND attempts = $3',
            [this.consumer, row.seq, row.attempts],
          );
          if (!removed.rowCount) return false; // our lease expired and someone else has it now
          await client.query(
            `INSERT INTO events_dead_letters (consumer, seq, attempts, last_error)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
            [this.consumer, row.seq, delivery.attempt, message],
          );
          return true;
        }).catch(() => false); // not moved: the lease expires and the next attempt dead-letters it
        if (!moved) return;
        this.options.onDeadLetter?.({
          consumer: this.consumer,
          envelope: delivery.envelope,
          subject: delivery.subject,
          attempts: delivery.attempt,
          error: message,
          deadAt: new Date(),
        });
        return;
      }
      const delay = backoffMs(delivery.attempt, this.options.backoff);
      await pool
        .query(
          `UPDATE events_deliveries
           SET leased_until = NULL, last_error = $4,
               available_at = now() + make_interval(secs => $5::double precision / 1000)
           WHERE consumer = $1 AND seq = $2 AND attempts = $3`,
          [this.consumer, row.seq, row.attempts, message, delay],
        )
        .catch(() => undefined); // not put back: the lease expires and it is delivered again
      if (!this.stopped) setTimeout(() => this.wake(), delay + 5).unref();
      return;
    }
    if (this.abandoned) return;
    // Acknowledge: only while our lease is ours (attempts unchanged).
    await pool
      .query('DELETE FROM events_deliveries WHERE consumer = $1 AND seq = $2 AND attempts = $3', [
        this.consumer,
        row.seq,
        row.attempts,
      ])
      .catch(() => undefined); // not acknowledged: delivered again once the lease expires
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten();
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    await this.polling;
    await Promise.allSettled([...this.inFlight]);
  }

  /** Stops at once: running handlers are left to finish or not; nothing more is acknowledged. */
  abandon(): void {
    this.stopped = true;
    this.abandoned = true;
    this.unlisten();
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
  }
}

/** Connects to (and creates, unless told not to) the broker database and its tables. */
export async function createPostgresTransport(options: PostgresTransportOptions): Promise<
  Transport & {
    readonly pool: Pool;
    pruneMessages(olderThanMs: number): Promise<number>;
    reapLiveConsumers(): Promise<number>;
  }
> {
  if (options.createDatabase ?? true) {
    const name = decodeURIComponent(new URL(options.url).pathname.slice(1));
    await ensureDatabase(options.url, name);
  }
  // A lost connection fails the claim or publish on it, never the process (see createPool).
  const pool = createPool({
    connectionString: options.url,
    max: options.maxConnections ?? 5,
    // Bounded, so that a broker database that stops answering (a network that drops packets rather
    // than refusing) fails a claim or an ack instead of hanging it, and with it the subscription's
    // single polling loop, for good: the next poll then tries again.
    connectionTimeoutMillis: 10_000,
    query_timeout: 30_000,
    // A connection whose host vanished (no FIN, no RST) ends after 30 s idle plus the kernel's
    // probes (Linux: 9, 75 s apart), instead of holding its leases and locks for hours: without an
    // initial delay, Node keeps the system's, two hours on Linux.
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
    // At-least-once bookkeeping need not wait for the disk; publishing does (see PostgresTransport).
    options: '-c synchronous_commit=off',
  });
  const transport = new PostgresTransport(pool, options);
  try {
    await transport.start();
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  return transport;
}
