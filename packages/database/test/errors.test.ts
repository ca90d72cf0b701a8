import { isDatabaseUnavailable, translateDatabaseError } from '../src/errors';

describe('isDatabaseUnavailable', () => {
  it.each([
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    new Error('Connection terminated unexpectedly'),
    Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    }),
    Object.assign(new Error('wrapped'), {
      cause: Object.assign(new Error('x'), { code: 'ECONNRESET' }),
    }),
    Object.assign(new Error("Can't reach database server"), { code: 'P1001' }),
  ])('recognises an outage: %s', (error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it.each([
    new Error('syntax error at or near "SELEC"'),
    Object.assign(new Error('duplicate key'), { code: '23505' }),
    Object.assign(new Error('Unique constraint failed'), { code: 'P2002' }),
    'a string',
    undefined,
  ])('does not mistake other errors for an outage: %s', (error) => {
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});

describe('translateDatabaseError', () => {
  it.each([
    ['a statement cut short by statement_timeout', { code: '57014' }, 'DEADLINE_EXCEEDED'],
    ['a lock wait cut short by lock_timeout', { code: '55P03' }, 'DEADLINE_EXCEEDED'],
    ['a deadlock', { code: '40P01' }, 'ABORTED'],
    ['a serialization failure', { code: '40001' }, 'ABORTED'],
    ['Prisma write conflict or deadlock', { code: 'P2034' }, 'ABORTED'],
    [
      'a deadlock inside a Prisma driver adapter error',
      { code: 'P2010', meta: { driverAdapterError: { cause: { originalCode: '40P01' } } } },
      'ABORTED',
    ],
    ['an outage', { code: 'ECONNREFUSED' }, 'UNAVAILABLE'],
  ])('maps %s to %s', (_label, fields, code) => {
    expect(translateDatabaseError(Object.assign(new Error('x'), fields))).toMatchObject({ code });
  });

  it('leaves other errors alone (they become INTERNAL)', () => {
    expect(translateDatabaseError(Object.assign(new Error('dup'), { code: '23505' }))).toBe(
      undefined,
    );
  });
});
