import { describeStartupError } from '../src/startup';

describe('describeStartupError', () => {
  it('explains a port in use', () => {
    const error = new Error(
      'No address added out of total 1 resolved: bind EADDRINUSE: address already in use 0.0.0.0:50051',
    );
    expect(describeStartupError(error)).toMatch(/already in use \(50051\)/);
  });
  it('explains an unreachable database', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
      code: 'ECONNREFUSED',
    });
    expect(describeStartupError(error)).toMatch(/cannot reach the database: check DATABASE_URL/);
  });
  it('explains failed migrations with the Prisma error line', () => {
    const error = new Error(
      'prisma migrate deploy failed (exit 1):\nLoaded Prisma config\nError: P3009 failed migrations found',
    );
    expect(describeStartupError(error)).toBe(
      'migrations failed to apply: Error: P3009 failed migrations found',
    );
  });
  it('leaves unknown errors alone', () => {
    expect(describeStartupError(new Error('something else'))).toBeUndefined();
  });
});
