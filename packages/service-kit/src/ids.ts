import { DomainError, type FieldViolation } from './errors';

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a UUID in its canonical 8-4-4-4-12 hex form (any case). */
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/**
 * Refuses ids that are not UUIDs with INVALID_ARGUMENT, one field violation per malformed id
 * (`{ id: request.id }` -> field `id`, reason INVALID_FORMAT), as AIP-193 asks: a malformed id is
 * the caller's mistake, not a resource that happens to be missing. Returns the ids lower-cased.
 */
export function requireUuids<K extends string>(ids: Record<K, string>): Record<K, string> {
  const entries = Object.entries(ids) as [K, string][];
  const violations: FieldViolation[] = entries
    .filter(([, value]) => !isUuid(value))
    .map(([field]) => ({ field, description: 'must be a UUID', reason: 'INVALID_FORMAT' }));
  if (violations.length > 0) throw DomainError.invalid(violations);
  return Object.fromEntries(
    entries.map(([field, value]) => [field, value.toLowerCase()]),
  ) as Record<K, string>;
}
