import { DomainError } from './errors';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** 0 (unset) means the default; negative is an error; above the maximum is clamped (AIP-158). */
export function normalizePageSize(pageSize: number, field = 'page_size'): number {
  if (!Number.isInteger(pageSize) || pageSize < 0) {
    throw DomainError.invalid([
      { field, description: 'must be a non-negative integer', reason: 'OUT_OF_RANGE' },
    ]);
  }
  if (pageSize === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(pageSize, MAX_PAGE_SIZE);
}

/**
 * Opaque page tokens: the position of the last item returned (a keyset cursor, never an offset),
 * as base64url JSON. Callers must treat them as opaque; the server validates what it decodes.
 */
export function encodePageToken(cursor: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');
}

/**
 * Decodes a token produced by `encodePageToken`, checking it has exactly the expected string
 * fields. An empty token means "first page" (undefined). Anything else is INVALID_ARGUMENT.
 */
export function decodePageToken<K extends string>(
  token: string,
  keys: readonly K[],
  field = 'page_token',
): Record<K, string> | undefined {
  if (token === '') return undefined;
  const invalid = () =>
    DomainError.invalid([
      { field, description: 'is not a page token returned by this API', reason: 'INVALID_FORMAT' },
    ]);
  if (token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid();
  const record = parsed as Record<string, unknown>;
  if (Object.keys(record).length !== keys.length) throw invalid();
  for (const key of keys) {
    if (typeof record[key] !== 'string') throw invalid();
  }
  return record as Record<K, string>;
}
