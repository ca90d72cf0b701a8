import { isDatabaseUnavailable } from '../src/errors';

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
