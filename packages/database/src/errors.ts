import { DomainError } from '@repo/service-kit/errors';

/** Error codes meaning "the database cannot be reached right now", as opposed to a bad query. */
const UNAVAILABLE_CODES = new Set([
  // Node sockets
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  // PostgreSQL SQLSTATE: connection exceptions (08xxx) and operator intervention (57Pxx)
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '57P01',
  '57P02',
  '57P03',
  // Prisma: can't reach server, timed out, server closed the connection, pool timeout
  'P1001',
  'P1002',
  'P1008',
  'P1017',
  'P2024',
]);

const UNAVAILABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection terminated due to connection timeout/i;

/**
 * True when `error` (or anything in its `cause` chain) says the database is unreachable. Services
 * answer such failures with UNAVAILABLE (retryable) instead of INTERNAL.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (typeof current !== 'object') return false;
    const { code, message, cause } = current as {
      code?: unknown;
      message?: unknown;
      cause?: unknown;
    };
    if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
    if (typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)) return true;
    current = cause;
  }
  return false;
}

/** For `unaryService`'s `translateError`: a database outage is UNAVAILABLE (retryable), not INTERNAL. */
export function databaseUnavailableError(error: unknown): DomainError | undefined {
  return isDatabaseUnavailable(error)
    ? new DomainError('UNAVAILABLE', 'the database is unavailable')
    : undefined;
}
