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

/** The SQLSTATE (or Prisma code) of `error` or of anything in its `cause` chain that has one. */
function codesOf(error: unknown): string[] {
  const codes: string[] = [];
  for (let current = error, depth = 0; current && depth < 6; depth++) {
    if (typeof current !== 'object') break;
    const { code, cause, meta } = current as { code?: unknown; cause?: unknown; meta?: unknown };
    if (typeof code === 'string') codes.push(code);
    // Prisma's driver adapters keep the driver's error under meta.driverAdapterError.cause.
    const adapterCause = (meta as { driverAdapterError?: { cause?: { originalCode?: unknown } } })
      ?.driverAdapterError?.cause?.originalCode;
    if (typeof adapterCause === 'string') codes.push(adapterCause);
    current = cause;
  }
  return codes;
}

/** PostgreSQL cancelled a statement (statement_timeout) or gave up waiting for a lock (lock_timeout). */
const CUT_SHORT_CODES = new Set(['57014', '55P03']);
/**
 * Deadlock detected, serialization failure, and Prisma's name for both (P2034): the transaction was
 * rolled back because of a concurrent one. Nothing was written; the same call may succeed if retried.
 */
const CONFLICT_CODES = new Set(['40P01', '40001', 'P2034']);

/**
 * For `unaryService`'s `translateError`: database failures the caller can act on, instead of
 * INTERNAL. An outage is UNAVAILABLE (retry later); a statement or lock wait cut short by the
 * request's deadline (the transaction helper sets statement_timeout and lock_timeout from it) is
 * DEADLINE_EXCEEDED, and the transaction was rolled back; a deadlock or serialization failure is
 * ABORTED (retry now).
 */
export function translateDatabaseError(error: unknown): DomainError | undefined {
  if (error instanceof DomainError) return error;
  if (isDatabaseUnavailable(error)) {
    return new DomainError('UNAVAILABLE', 'the database is unavailable', [], { cause: error });
  }
  const codes = codesOf(error);
  if (codes.some((code) => CUT_SHORT_CODES.has(code))) {
    return new DomainError(
      'DEADLINE_EXCEEDED',
      'the request did not finish before its deadline; nothing was done',
      [],
      { cause: error },
    );
  }
  if (codes.some((code) => CONFLICT_CODES.has(code))) {
    return new DomainError(
      'ABORTED',
      'the request conflicted with a concurrent one and nothing was done; retry it',
      [],
      { cause: error },
    );
  }
  return undefined;
}
