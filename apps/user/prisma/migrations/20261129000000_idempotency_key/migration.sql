-- CreateUser accepts an idempotency key (see @repo/service-kit/idempotency).
ALTER TABLE "users" ADD COLUMN "idempotency_key" TEXT,
ADD COLUMN "request_fingerprint" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "users_idempotency_key_key" ON "users"("idempotency_key");
