import type { Queryable } from './outbox';

/**
 * Exactly-once effects over at-least-once delivery: `handleOnce` records the event id in the
 * consumer's own database (the `inbox` table, see `inboxMigrationSql`) on `tx`, the transaction
 * that applies the effect. The id is inserted first: a redelivered event finds it there and changes
 * nothing; two deliveries of one event at the same moment wait on the row, and the second finds it
 * once the first commits. If the effect throws, the transaction rolls back with the id, and the
 * event is applied when it comes again.
 */
export async function handleOnce<T>(
  tx: Queryable,
  consumer: string,
  eventId: string,
  effect: (tx: Queryable) => Promise<T>,
): Promise<{ applied: true; result: T } | { applied: false }> {
  const recorded = await tx.query(
    `INSERT INTO "inbox" ("consumer", "event_id") VALUES ($1, $2)
     ON CONFLICT ("consumer", "event_id") DO NOTHING`,
    [consumer, eventId],
  );
  if (!recorded.rowCount) return { applied: false };
  return { applied: true, result: await effect(tx) };
}

/** Forgets inbox rows older than `olderThanMs` (longer than any redelivery can come late). */
export async function pruneInbox(db: Queryable, olderThanMs: number): Promise<number> {
  const result = await db.query(
    `DELETE FROM "inbox" WHERE "processed_at" < now() - make_interval(secs => $1::double precision / 1000)`,
    [olderThanMs],
  );
  return result.rowCount ?? 0;
}
