import { createHash } from 'node:crypto';
import { DomainError, type FieldViolation } from './errors';

/**
 * Idempotency keys, as the IETF "Idempotency-Key HTTP header field" draft describes them: a client
 * sends the same key when it retries a request, and gets the first request's result instead of a
 * second effect. The key is bound to the request it first came with:
 *
 * - the same key with the same request replays the first result;
 * - the same key with a different request is refused (INVALID_ARGUMENT with reason
 *   IDEMPOTENCY_KEY_REUSED; the gateway answers 422, /problems/idempotency-key-reused);
 * - the same key while the first request is still being processed is ABORTED (409: retry later);
 * - a key is remembered for IDEMPOTENCY_KEY_TTL_MS after its first use, then forgotten: the same key
 *   afterwards starts a new request.
 *
 * Services store a fingerprint of the request next to the key (never the request itself).
 */

/** How long a key is remembered: 24 hours, the draft's example and what Stripe keeps. */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 60 * 60 * 1000;

export const IDEMPOTENCY_KEY_MAX = 100;
/** Printable ASCII without spaces: keys usually are UUIDs or similar tokens. */
const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]+$/;

/** The reason carried by the field violation of a reused key (the gateway maps it to 422). */
export const IDEMPOTENCY_KEY_REUSED = 'IDEMPOTENCY_KEY_REUSED';

/** A violation when `key` is not a usable key ('' means "no key" and is fine). */
export function idempotencyKeyViolation(
  key: string,
  field = 'idempotency_key',
): FieldViolation | undefined {
  if (key === '' || (key.length <= IDEMPOTENCY_KEY_MAX && IDEMPOTENCY_KEY_PATTERN.test(key))) {
    return undefined;
  }
  return {
    field,
    description: `must be 1 to ${IDEMPOTENCY_KEY_MAX} printable ASCII characters without spaces`,
    reason: 'INVALID_FORMAT',
  };
}

/**
 * A stable fingerprint of a request's meaningful content: SHA-256 over its canonical JSON (the
 * caller passes values in a fixed order, e.g. lines sorted by product). Never pass secrets: the
 * fingerprint is stored.
 */
export function requestFingerprint(canonical: unknown): string {
  return createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');
}

export function idempotencyKeyReused(field = 'idempotency_key'): DomainError {
  return new DomainError(
    'INVALID_ARGUMENT',
    'this Idempotency-Key was already used with a different request; use a new key for a new request',
    [
      {
        field,
        description: 'was already used with a different request',
        reason: IDEMPOTENCY_KEY_REUSED,
      },
    ],
  );
}

export function idempotencyKeyInProgress(): DomainError {
  return new DomainError(
    'ABORTED',
    'a request with this Idempotency-Key is still being processed; retry after it has finished',
  );
}
