import { currentContext } from './context';
import { DomainError } from './errors';

/**
 * Deadlines that bind the work, not only the answer. A caller that has given up (its deadline
 * passed, or it cancelled) gets nothing from work done afterwards, and for a write that work is
 * harmful: the caller was told "failed" (504) while the change happened anyway. So every layer asks
 * these before doing something that costs or commits:
 *
 * - the gRPC server does not start a handler whose deadline has passed (`unaryService`);
 * - queued CPU work is dropped before it starts (`BoundedQueue`);
 * - a database transaction bounds each statement and lock wait by the remaining budget and commits
 *   only while the deadline holds (`@repo/database/transaction`).
 */

/** DEADLINE_EXCEEDED: the caller's deadline passed before the work could be done; nothing was done. */
export const deadlineExceeded = (what = 'the request') =>
  new DomainError(
    'DEADLINE_EXCEEDED',
    `${what} did not finish before its deadline; nothing was done`,
  );

/** CANCELLED: the caller went away; nothing was done. */
export const cancelled = () => new DomainError('CANCELLED', 'the caller cancelled the request');

/**
 * Milliseconds left before the current request's deadline (may be <= 0), or undefined when the
 * request has none (a background job, a test calling the domain directly).
 */
export function remainingMs(now = Date.now()): number | undefined {
  const deadline = currentContext()?.deadline;
  return deadline ? deadline.getTime() - now : undefined;
}

/**
 * Why the current request's signal was aborted, as a DomainError: the reason it was aborted with
 * when that is one (the gRPC server aborts with DEADLINE_EXCEEDED or CANCELLED), else CANCELLED
 * (the gateway aborts when its HTTP client goes away).
 */
export function abortReason(signal: AbortSignal): DomainError {
  return signal.reason instanceof DomainError ? signal.reason : cancelled();
}

/** Throws DEADLINE_EXCEEDED or CANCELLED when the caller is gone; otherwise does nothing. */
export function throwIfDone(what?: string): void {
  const context = currentContext();
  if (!context) return;
  if (context.deadline && context.deadline.getTime() <= Date.now()) throw deadlineExceeded(what);
  if (context.signal?.aborted) throw abortReason(context.signal);
}
