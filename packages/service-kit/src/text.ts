// An unpaired surrogate: with the `u` flag a well-formed pair is one code point, never Cs.
// (String.prototype.isWellFormed does the same on Node 20, but is not in TypeScript's ES2023 lib.)
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/** Why `isStorableText` refused a value, worded for a field violation or a problem document. */
export const STORABLE_TEXT_RULE = 'must be well-formed Unicode without NUL characters';

/**
 * Whether a string can be stored and compared exactly as received: no U+0000 (PostgreSQL's text
 * types cannot hold it, so it would fail as an internal error) and no unpaired surrogate (UTF-8
 * cannot encode one, so it would silently become U+FFFD and two different inputs would collide).
 * JSON's `\u0000` and `\uD800` escapes produce both, so check after parsing.
 */
export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && !UNPAIRED_SURROGATE.test(value);
}
