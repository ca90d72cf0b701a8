import { afterCommit } from '@repo/database/transaction';
import { newEnvelope, type Envelope, type NewEvent } from './envelope';
import { hasLocalRelay, OUTBOX_CHANNEL, wakeLocalRelays } from './wake';

/** A statement runner: a pg Pool, or the client of a transaction (`inTransaction`'s `client`). */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

export { OUTBOX_CHANNEL };

/**
 * The outbox table, as a Prisma migration (`migration.sql`) for a service to copy
 * into `apps/<service>/prisma/migrations/<timestamp>_outbox/`, with the models `outboxModels`
 * gives added to its schema.prisma (so later `prisma migrate diff`s do not drop the tables).
 *
 * - `position` orders the whole outbox; since a service writes an aggregate's event in the
 *   transaction that changed (and so locked) the aggregate, positions follow each aggregate's
 *   commit order, which the relay keeps when publishing. It becomes the envelope's `sequence`.
 * - The relay deletes a row once the broker confirmed it, or, when told to keep sent rows for a
 *   while (`retainSentMs`), sets `sent_at` and deletes it later. Unsent rows (`sent_at IS NULL`)
 *   are found in position order through the (sent_at, position) index, a plain index Prisma
 *   knows about (a partial one would be dropped by the next generated migration).
 * - No trigger wakes the relay: `appendToOutbox` does, after commit (./wake). (A trigger
 *   function's body is dollar-quoted, and the schema engine `prisma migrate deploy` runs here
 *   splits a migration at every `;`, inside such bodies too.)
 */
export function outboxMigrationSql(): string {
  return `-- The transactional outbox (packages/events): events written in the same transaction as the change.
CREATE TABLE "outbox" (
    "position" BIGSERIAL NOT NULL,
    "event_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "aggregate_id" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "source" TEXT NOT NULL,
    "traceparent" TEXT NOT NULL DEFAULT '',
    "tracestate" TEXT NOT NULL DEFAULT '',
    "payload" BYTEA NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,
    "sent_at" TIMESTAMPTZ(3),

    CONSTRAINT "outbox_pkey" PRIMARY KEY ("position")
);

CREATE UNIQUE INDEX "outbox_event_id_key" ON "outbox"("event_id");
CREATE INDEX "outbox_sent_at_position_idx" ON "outbox"("sent_at", "position");
`;
}

/** The inbox table, as a Prisma migration, for a service that consumes events (see ./inbox). */
export function inboxMigrationSql(): string {
  return `-- The inbox (packages/events): one row per event a consumer applied, written with its effect.
CREATE TABLE "inbox" (
    "consumer" TEXT NOT NULL,
    "event_id" TEXT NOT NULL,
    "processed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "inbox_pkey" PRIMARY KEY ("consumer", "event_id")
);

CREATE INDEX "inbox_processed_at_idx" ON "inbox"("processed_at");
`;
}

/** The Prisma models matching the two migrations above, for schema.prisma. */
export const outboxModels = `model Outbox {
  position    BigInt    @id @default(autoincrement())
  eventId     String    @unique @map("event_id")
  type        String
  aggregateId String    @map("aggregate_id")
  occurredAt  DateTime  @map("occurred_at") @db.Timestamptz(3)
  source      String
  traceparent String    @default("")
  tracestate  String    @default("")
  payload     Bytes
  attempts    Int       @default(0)
  lastError   String?   @map("last_error")
  sentAt      DateTime? @map("sent_at") @db.Timestamptz(3)

  @@index([sentAt, position])
  @@map("outbox")
}

model Inbox {
  consumer    String
  eventId     String   @map("event_id")
  processedAt DateTime @default(now()) @map("processed_at") @db.Timestamptz(3)

  @@id([consumer, eventId])
  @@index([processedAt])
  @@map("inbox")
}
`;

/**
 * Writes the event to the outbox on `tx`, the transaction that makes the change it describes:
 * the event exists if and only if the change committed. Call it after the statement that changed
 * (and so locked) the aggregate, so that the aggregate's events are positioned in commit order.
 * Returns the event's outbox position.
 */
export async function appendToOutbox(tx: Queryable, envelope: Envelope): Promise<bigint> {
  // The relay is woken in this process once `tx` committed (./wake). Otherwise the statement
  // NOTIFYs too (still one round trip), delivered at COMMIT, never for a rolled-back transaction.
  const wokenAfterCommit = hasLocalRelay() && afterCommit(tx, wakeLocalRelays);
  const result = await tx.query(wokenAfterCommit ? APPEND_SQL : APPEND_AND_NOTIFY_SQL, [
    envelope.id,
    envelope.type,
    envelope.aggregateId,
    envelope.occurredAt ?? new Date(),
    envelope.source,
    envelope.traceparent,
    envelope.tracestate,
    Buffer.from(envelope.payload),
  ]);
  return BigInt((result.rows[0] as { position: string }).position);
}

const APPEND_SQL = `INSERT INTO "outbox" ("event_id", "type", "aggregate_id", "occurred_at",
    "source", "traceparent", "tracestate", "payload")
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING "position"`;

const APPEND_AND_NOTIFY_SQL = `WITH "appended" AS (${APPEND_SQL})
  SELECT "position", pg_notify('${OUTBOX_CHANNEL}', '') FROM "appended"`;

/**
 * The outbox's backlog, for the relay's metrics: unsent events (`outbox_backlog_events`) and how
 * long the oldest has waited (`outbox_oldest_unsent_seconds`, 0 when none). Reads the unsent rows'
 * entries of the (sent_at, position) index only.
 */
export async function outboxBacklog(
  db: Queryable,
): Promise<{ events: number; oldestUnsentSeconds: number }> {
  const result = await db.query(
    `SELECT count(*)::int AS events,
            COALESCE(EXTRACT(EPOCH FROM now() - min("occurred_at")), 0)::float8 AS oldest
     FROM "outbox" WHERE "sent_at" IS NULL`,
  );
  const row = result.rows[0] as { events: number; oldest: number } | undefined;
  return { events: row?.events ?? 0, oldestUnsentSeconds: Math.max(0, row?.oldest ?? 0) };
}

/**
 * `appendToOutbox` for a new event (`newEnvelope`): what services call in the transaction of the
 * change, with the request's trace context (`currentTraceHeaders()` of @repo/service-kit/tracing).
 */
export function appendEvent(tx: Queryable, event: NewEvent): Promise<bigint> {
  return appendToOutbox(tx, newEnvelope(event));
}
