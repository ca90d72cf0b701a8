import type { Pool, PoolClient } from 'pg';
import type { Envelope } from './envelope';
import { backoffMs, errorMessage, type Transport } from './transport';
import { OUTBOX_CHANNEL, coalescedNotifier, registerLocalRelay, type LocalRelay } from './wake';

/**
 * Publishes a service's outbox through a transport.
 *
 * - Leadership: one relay per database publishes at a time. Each relay holds a connection of its
 *   own on which it tries a session advisory lock (`pg_try_advisory_lock`); the one that has it
 *   publishes, the others stand by and try again every `standbyMs`. A relay whose process dies
 *   loses its connection and so the lock, and a standby takes over. (A lock rather than `FOR UPDATE
 *   SKIP LOCKED` on rows: two relays each skipping the other's rows would publish one aggregate's
 *   events side by side, out of order.)
 * - Waking: `appendToOutbox` in this process wakes the relay after the writer's commit (./wake);
 *   a standby passes that on to the leader with a NOTIFY on `outbox`, which the leader's
 *   connection LISTENs to (as it does to the NOTIFY of writers without a relay in their process).
 *   Without either the relay still looks every `pollMs` (slow: a lost wake only delays).
 * - Order: a round reads the oldest unsent rows by position. A transport that can publish them
 *   all at once in that order (`publishMany`) gets them in one call. Otherwise, or when that
 *   fails, the round publishes each aggregate's events one after the other (an event is sent only
 *   once the previous one of its aggregate was confirmed; different aggregates go in parallel),
 *   and stops an aggregate at its first failure, so a later event never overtakes an earlier one.
 * - Confirmation: a row is marked sent only after the transport confirmed it; a failure records
 *   the attempt and the error and the round is retried after a backoff. A relay that dies between
 *   the broker's confirmation and the mark leaves the row unsent: the next leader sends it again,
 *   with the same event id, which the broker de-duplicates and consumers' inboxes ignore.
 */
export interface RelayOptions {
  /** The service's own database. */
  pool: Pool;
  transport: Transport;
  /** The advisory lock's name (default "outbox-relay"); one per outbox. */
  lockName?: string;
  /** Rows per round (default 100). */
  batchSize?: number;
  /** Aggregates published at once (default 16). */
  parallelism?: number;
  /** Look for unsent rows this often even without a notification (default 5 s). */
  pollMs?: number;
  /**
   * After a wake, wait this long before the round (default 10 ms), so that the events committed
   * meanwhile go to the broker in the same round: one broker transaction (and one disk flush) for
   * many orders instead of one each, for at most this much more latency.
   */
  lingerMs?: number;
  /** How often a standby relay tries to take over (default 2 s). */
  standbyMs?: number;
  /**
   * A publish the broker has not confirmed within this time counts as failed (default 10 s): a
   * connection that died without saying so must not hold the relay, and with it every event of the
   * service, for good. It is sent again later; the broker drops the duplicate if the first arrived.
   */
  publishTimeoutMs?: number;
  /**
   * Backoff between rounds that failed (default 100 ms doubling to 2 s). The cap bounds how long a
   * broker back from an outage waits for the relay when no new event wakes it: with 30 s, a 20 s
   * outage's backlog stayed unsent up to 30 s after recovery (test/faults.test.ts), against issue
   * 15's "delivered within 10 s". A failed round costs one attempt per waiting aggregate.
   */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * How long a sent row stays in the outbox, marked `sent_at` (default 0: deleted as soon as the
   * broker confirmed it; the broker keeps events for 7 days). Marking costs the write of a new
   * row version and of its index entries, deleting only the row: on S3 every order pays one or
   * the other. Keep them for a while to look at what was sent from the service's own database.
   */
  retainSentMs?: number;
  /** A publish failed, or the relay lost its database connection. */
  onError?: (error: unknown, envelope?: Envelope) => void;
  /** Rows confirmed by the broker and marked sent. */
  onPublished?: (count: number) => void;
}

interface OutboxRow {
  position: string;
  event_id: string;
  type: string;
  aggregate_id: string;
  occurred_at: Date;
  source: string;
  traceparent: string;
  tracestate: string;
  payload: Buffer;
}

const toEnvelope = (row: OutboxRow): Envelope => ({
  id: row.event_id,
  type: row.type,
  aggregateId: row.aggregate_id,
  occurredAt: row.occurred_at,
  traceparent: row.traceparent,
  tracestate: row.tracestate,
  payload: row.payload,
  source: row.source,
  sequence: Number(row.position),
});

/** See RelayOptions.backoff. */
const DEFAULT_RELAY_BACKOFF = { initialMs: 100, maxMs: 2000 };

export class Relay implements LocalRelay {
  private stopped = true;
  private loop: Promise<void> | undefined;
  private client: PoolClient | undefined;
  private leader = false;
  private wakeUp: () => void = () => undefined;
  private woken = false;
  private failures = 0;
  private lastCleanup = 0;
  /** NOTIFY `outbox` outside any transaction, for the leader wherever it runs (./wake). */
  private readonly notifyLeader = coalescedNotifier(
    () => this.options.pool.query(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`),
    () => this.stopped,
  );

  constructor(private readonly options: RelayOptions) {}

  /** True while this relay holds the lock and publishes. */
  get isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    registerLocalRelay(this, true);
    this.loop = this.run();
  }

  /**
   * An event was committed to the outbox in this process (./wake): the leader looks now; a
   * standby tells the leader, wherever it runs, with a NOTIFY outside any transaction. Wakes that
   * arrive while one NOTIFY is in flight are folded into one more.
   */
  outboxWritten(): void {
    if (this.stopped) return;
    if (this.leader) {
      this.wake();
      return;
    }
    this.notifyLeader();
  }

  /** Looks at the outbox now (the NOTIFY does this; tests and callers may too). */
  wake(): void {
    this.woken = true;
    this.wakeUp();
  }

  /**
   * Stops after the round in progress (waiting at most `timeoutMs` for it) and gives up the lock.
   * A round cut short leaves its unconfirmed rows unsent: the next leader sends them.
   */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    registerLocalRelay(this, false);
    this.wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.loop,
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    this.dropConnection(); // releases the lock even if a round is still stuck
  }

  private dropConnection(): void {
    const client = this.client;
    this.client = undefined;
    this.leader = false;
    // Destroyed, not returned to the pool: closing the session is what releases the lock.
    client?.release(true);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const client = await this.connection();
        if (!this.leader) {
          const locked = await client.query<{ locked: boolean }>(
            'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked',
            [this.options.lockName ?? 'outbox-relay'],
          );
          this.leader = locked.rows[0]?.locked === true;
          if (!this.leader) {
            await this.idle(this.options.standbyMs ?? 2000);
            continue;
          }
        }
        const { published, full, failed } = await this.round();
        if (published > 0) this.options.onPublished?.(published);
        if (failed) {
          this.failures++;
          await this.idle(backoffMs(this.failures, this.options.backoff ?? DEFAULT_RELAY_BACKOFF));
          continue;
        }
        this.failures = 0;
        await this.cleanup();
        if (!full) {
          await this.idle(this.options.pollMs ?? 5000);
          const linger = this.options.lingerMs ?? 10;
          if (linger > 0 && !this.stopped) await new Promise((r) => setTimeout(r, linger));
        }
      } catch (error) {
        if (this.stopped) break;
        this.options.onError?.(error);
        this.dropConnection();
        this.failures++;
        await this.idle(backoffMs(this.failures, { initialMs: 200, maxMs: 10_000 }));
      }
    }
  }

  private async connection(): Promise<PoolClient> {
    if (this.client) return this.client;
    const client = await this.options.pool.connect();
    client.on('notification', (message) => {
      if (message.channel === OUTBOX_CHANNEL) this.wake();
    });
    client.on('error', () => {
      if (this.client === client) this.dropConnection();
      this.wake();
    });
    try {
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (error) {
      client.release(true);
      throw error;
    }
    this.client = client;
    return client;
  }

  /** Waits `ms`, or less when woken. */
  private async idle(ms: number): Promise<void> {
    if (this.woken || this.stopped) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = () => undefined;
    this.woken = false;
  }

  /** One pass over the oldest unsent rows. */
  async round(): Promise<{ published: number; full: boolean; failed: boolean }> {
    const { pool, transport } = this.options;
    const batchSize = this.options.batchSize ?? 100;
    const { rows } = await pool.query<OutboxRow>(
      `SELECT "position", "event_id", "type", "aggregate_id", "occurred_at", "source",
              "traceparent", "tracestate", "payload"
       FROM "outbox" WHERE "sent_at" IS NULL ORDER BY "position" LIMIT $1`,
      [batchSize],
    );
    if (rows.length > 1 && transport.publishMany && (await this.publishAll(rows))) {
      return { published: rows.length, full: rows.length === batchSize, failed: false };
    }
    const byAggregate = new Map<string, OutboxRow[]>();
    for (const row of rows) {
      const list = byAggregate.get(row.aggregate_id) ?? [];
      list.push(row);
      byAggregate.set(row.aggregate_id, list);
    }
    const confirmed: string[] = [];
    let failed = false;
    const chains = [...byAggregate.values()];
    const parallelism = this.options.parallelism ?? 16;
    const worker = async () => {
      for (let chain = chains.shift(); chain; chain = chains.shift()) {
        for (const row of chain) {
          if (this.stopped) return;
          const envelope = toEnvelope(row);
          try {
            await withTimeout(transport.publish(envelope), this.options.publishTimeoutMs ?? 10_000);
          } catch (error) {
            failed = true;
            this.options.onError?.(error, envelope);
            await pool
              .query(
                'UPDATE "outbox" SET "attempts" = "attempts" + 1, "last_error" = $2 WHERE "position" = $1',
                [row.position, errorMessage(error).slice(0, 1000)],
              )
              .catch(() => undefined);
            break; // the aggregate's later events wait for this one
          }
          confirmed.push(row.position);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallelism, chains.length) }, worker));
    if (confirmed.length > 0) await this.markSent(confirmed);
    return { published: confirmed.length, full: rows.length === batchSize && !failed, failed };
  }

  /**
   * The round's rows in one call (`publishMany`: all or none, in position order, so each
   * aggregate's too) and marked sent: true. On failure false, and the round goes one event at a
   * time, which finds the event that fails and keeps the aggregates behind it waiting alone.
   */
  private async publishAll(rows: readonly OutboxRow[]): Promise<boolean> {
    const { transport } = this.options;
    try {
      await withTimeout(
        transport.publishMany!(rows.map(toEnvelope)),
        this.options.publishTimeoutMs ?? 10_000,
      );
    } catch {
      return false;
    }
    await this.markSent(rows.map((row) => row.position));
    return true;
  }

  /**
   * Deletes the rows the broker confirmed, or marks them sent when they are kept
   * (`retainSentMs`). In a transaction that does not wait for the disk (`synchronous_commit =
   * off`): a mark lost to a crash of the database only sends those events again, which the broker
   * de-duplicates by id, the at-least-once this relay gives anyway. Waiting for the disk here made
   * every mark compete for the write-ahead log's flush with the service's own COMMITs (S3).
   * One simple-protocol string, so one implicit transaction: the positions are inlined, and they
   * are bigints this database gave, checked as such.
   */
  private async markSent(positions: readonly string[]): Promise<void> {
    if (!positions.every((position) => /^[0-9]+$/.test(position))) {
      throw new Error(`outbox positions are not integers: ${positions.join(', ')}`);
    }
    const rows = `"position" = ANY ('{${positions.join(',')}}'::bigint[])`;
    await this.options.pool.query(
      (this.options.retainSentMs ?? 0) > 0
        ? `SET LOCAL synchronous_commit = off;
           UPDATE "outbox" SET "sent_at" = now(), "attempts" = "attempts" + 1 WHERE ${rows}`
        : `SET LOCAL synchronous_commit = off; DELETE FROM "outbox" WHERE ${rows}`,
    );
  }

  private async cleanup(): Promise<void> {
    const retain = this.options.retainSentMs ?? 0;
    const now = Date.now();
    if (retain <= 0 || now - this.lastCleanup < 60_000) return;
    this.lastCleanup = now;
    await this.options.pool.query(
      `DELETE FROM "outbox" WHERE "sent_at" < now() - make_interval(secs => $1::double precision / 1000)`,
      [retain],
    );
  }
}

/** `work`, or a rejection once `ms` have passed without it settling. */
async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the broker did not confirm within ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A relay, started. */
export function startRelay(options: RelayOptions): Relay {
  const relay = new Relay(options);
  relay.start();
  return relay;
}
