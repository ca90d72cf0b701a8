import { DomainError } from '../src/errors';
import { decodePageToken, encodePageToken, normalizePageSize } from '../src/pagination';

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
