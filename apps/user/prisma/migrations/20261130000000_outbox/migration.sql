-- The transactional outbox (packages/events): events written in the same transaction as the change.
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
