-- Idempotency keys are bound to the request they came with (see @repo/service-kit/idempotency).
-- Orders placed before this migration have no fingerprint and match any request with their key.
ALTER TABLE "orders" ADD COLUMN "request_fingerprint" TEXT;
