import { DomainError } from '../src/errors';
import {
  decodePageToken,
  encodePageToken,
  normalizePageSize,
  parseCursorTime,
} from '../src/pagination';
import { isStorableText } from '../src/text';

describe('page sizes', () => {
  it('defaults 0 to 20 and clamps above 100', () => {
    expect(normalizePageSize(0)).toBe(20);
    expect(normalizePageSize(7)).toBe(7);
    expect(normalizePageSize(1000)).toBe(100);
  });
  it('rejects negative sizes', () => {
    expect(() => normalizePageSize(-1)).toThrow(DomainError);
  });
});

describe('page tokens', () => {
  it('round-trips a cursor', () => {
    const token = encodePageToken({ t: '2026-01-01T00:00:00.000Z', id: 'abc' });
    expect(decodePageToken(token, ['t', 'id'])).toEqual({
      t: '2026-01-01T00:00:00.000Z',
      id: 'abc',
    });
  });
  it('treats an empty token as the first page', () => {
    expect(decodePageToken('', ['id'])).toBeUndefined();
  });
  it.each([
    '%%%',
    'bm90IGpzb24',
    encodePageToken({ other: 'x' }),
    encodePageToken({ id: 'x', extra: 'y' }),
    'a'.repeat(600),
    // PostgreSQL cannot hold U+0000; an unpaired surrogate is not text at all.
    encodePageToken({ id: '\u0000' }),
    encodePageToken({ id: 'abc\u0000' }),
    encodePageToken({ id: '\ud800' }),
    encodePageToken({ id: 'a\udfffb' }),
  ])('rejects a forged or corrupt token %#', (token) => {
    let caught: unknown;
    try {
      decodePageToken(token, ['id']);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DomainError);
    expect(caught).toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [{ field: 'page_token' }],
    });
  });
});

describe('time cursors', () => {
  it('reads back what toISOString wrote', () => {
    for (const iso of [
      '1970-01-01T00:00:00.000Z',
      '2026-11-29T06:08:02.008Z',
      '9999-12-31T23:59:59.999Z',
    ]) {
      expect(parseCursorTime(iso).toISOString()).toBe(iso);
    }
  });

  it.each([
    '-271821-04-20T00:00:00.000Z', // the earliest JavaScript date: PostgreSQL cannot take it
    '+275760-09-13T00:00:00.000Z',
    '+010000-01-01T00:00:00.000Z',
    '1969-12-31T23:59:59.999Z',
    '2026-02-30T00:00:00.000Z', // not a real date (JavaScript rolls it over to March)
    '2026-11-29',
    '2026-11-29T06:08:02Z',
    '2026-11-29T06:08:02.008+01:00',
    'Sun Nov 29 2026',
    '0',
    '',
  ])('is an Invalid Date for %j', (value) => {
    expect(Number.isNaN(parseCursorTime(value).getTime())).toBe(true);
  });
});

describe('storable text', () => {
  it.each(['', 'plain', 'é and e\u0301', '🙂', '\uffff'])('accepts %j', (value) => {
    expect(isStorableText(value)).toBe(true);
  });
  it.each(['\u0000', 'a\u0000b', '\ud800', '\udc00', 'a\ud83d', '\ude42\ud83d'])(
    'refuses %j',
    (value) => {
      expect(isStorableText(value)).toBe(false);
    },
  );
});
