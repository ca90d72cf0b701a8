import { DomainError } from './errors';
import { isStorableText } from './text';

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
 * fields, each storable text (no NUL, no unpaired surrogate: see `isStorableText`; a forged token
 * must not reach the database with either). An empty token means "first page" (undefined).
 * Anything else is INVALID_ARGUMENT.
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
    const value = record[key];
    if (typeof value !== 'string' || !isStorableText(value)) throw invalid();
  }
  return record as Record<K, string>;
}

/** The instants a time cursor may name (ms): 1970 to 9999, which PostgreSQL's timestamps hold. */
const CURSOR_TIME_MIN = Date.UTC(1970, 0, 1);
const CURSOR_TIME_MAX = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * The instant in a page token's time field, as `encodePageToken({ t: date.toISOString(), ... })`
 * wrote it; an Invalid Date for anything else: not exactly that format, not a real calendar date,
 * or outside the years 1970 to 9999. JavaScript dates reach year 275760 either way,
 * PostgreSQL's timestamps do not, so `new Date(cursor.t)` let a forged token fail in the database
 * as an internal error. A drop-in for `new Date(cursor.t)`: callers keep refusing an Invalid Date.
 */
export function parseCursorTime(value: string): Date {
  const time = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(value)
    ? Date.parse(value)
    : Number.NaN;
  const inRange =
    time >= CURSOR_TIME_MIN && time <= CURSOR_TIME_MAX && new Date(time).toISOString() === value; // 2026-02-30 parses (as March 2nd): not a real date
  return new Date(inRange ? time : Number.NaN);
}
