import { remainingMs, throwIfDone, deadlineExceeded } from '@repo/service-kit/deadline';
import { SpanKind, withChildSpan } from '@repo/service-kit/tracing';
import type { Pool, PoolClient } from 'pg';
import { translateDatabaseError } from './errors';

/**
 * Transactions bound by the deadline of the request they serve (from the async request context):
 *
 * - nothing starts when the caller is already gone, and waiting for a pooled connection stops at
 *   the deadline;
 * - `statement_timeout` and `lock_timeout` are set (SET LOCAL: this transaction only) to the time
 *   left, so PostgreSQL itself cancels a statement or a lock wait that would outlive the caller;
 * - COMMIT is sent only while the deadline still holds; otherwise the transaction is rolled back and
 *   the call fails with DEADLINE_EXCEEDED, which then truthfully means "nothing was done".
 *
 * One window cannot be closed: the COMMIT succeeds and the answer is lost on the way back (the
 * network drops, the deadline passes while the answer travels). The caller then sees an error for
 * work that was done. That is what idempotency keys are for: a client retries with the same key and
 * gets the first result instead of a second order (see the order service's README).
 *
 * Without a deadline (a job, a test calling the repository directly) these are plain transactions.
 */

/** Starting a transaction with less time left than this is pointless: it is refused up front. */
const MIN_BUDGET_MS = 5;

function budgetSql(budgetMs: number | undefined): string {
  if (budgetMs === undefined) return 'BEGIN';
  const ms = Math.max(1, Math.floor(budgetMs));
  // Integers we computed, not input: safe to inline. One round trip for all three statements.
  return `BEGIN; SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${ms}`;
}

async function connectWithin(pool: Pool, budgetMs: number | undefined): Promise<PoolClient> {
  if (budgetMs === undefined) return pool.connect();
  const connecting = pool.connect();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(deadlineExceeded('waiting for a database connection')),
      budgetMs,
    );
  });
  try {
    return await Promise.race([connecting, expired]);
  } catch (error) {
    // The pool may still hand us a connection later: give it straight back.
    connecting.then((client) => client.release()).catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Hooks to run once a transaction of `inTransaction` has committed, by the client it runs on.
 * A Set: the same hook registered by several statements of one transaction runs once.
 */
const commitHooks = new WeakMap<object, Set<() => void>>();

/**
 * Runs `hook` after the transaction that `client` (the `client` of an `inTransaction` callback) is
 * in has committed, and never if it rolls back. Returns false, registering nothing, when `client`
 * is not in a transaction of `inTransaction` (a bare pool, a transaction opened by hand): the
 * caller then cannot learn of the commit this way. Hooks run synchronously after COMMIT answered
 * and must not throw (one that does is ignored: the commit happened whatever a hook does).
 *
 * For work that must follow the commit but is not part of it, such as waking the outbox relay of
 * @repo/events, which would otherwise need a NOTIFY inside the transaction (a NOTIFY makes COMMIT
 * take a lock that is global to the database, held while the transaction's row locks are).
 */
export function afterCommit(client: object, hook: () => void): boolean {
  const hooks = commitHooks.get(client);
  if (!hooks) return false;
  hooks.add(hook);
  return true;
}

function runCommitHooks(hooks: Set<() => void> | undefined): void {
  for (const hook of hooks ?? []) {
    try {
      hook();
    } catch {
      // See afterCommit: the transaction committed; a hook's failure cannot change that.
    }
  }
}

/** What `work` can decide about its own transaction. */
export interface TransactionControl {
  /** Roll back instead of committing when `work` returns (its result is still returned). */
  rollbackOnly(): void;
}

/**
 * Runs `work` in one transaction on one pooled connection, bound by the current deadline (see
 * above). `work` returning commits (if the deadline holds) unless it called `rollbackOnly()`;
 * throwing rolls back. Errors come back
 * translated: a statement or lock wait cut short by the deadline is DEADLINE_EXCEEDED, a deadlock or
 * serialization failure ABORTED, an unreachable database UNAVAILABLE.
 */
export function inTransaction<T>(
  pool: Pool,
  work: (client: PoolClient, control: TransactionControl) => Promise<T>,
): Promise<T> {
  // One span for the whole transaction (waiting for a connection included), its statements below.
  return withChildSpan('transaction', SpanKind.CLIENT, TRANSACTION_ATTRIBUTES, () =>
    transaction(pool, work),
  );
}

const TRANSACTION_ATTRIBUTES = { 'db.system.name': 'postgresql' };

async function transaction<T>(
  pool: Pool,
  work: (client: PoolClient, control: TransactionControl) => Promise<T>,
): Promise<T> {
  throwIfDone();
  const budget = remainingMs();
  if (budget !== undefined && budget < MIN_BUDGET_MS) throw deadlineExceeded();
  const client = await connectWithin(pool, budget);
  let broken: Error | undefined;
  let open = false;
  try {
    throwIfDone();
    await client.query(budgetSql(remainingMs()));
    open = true;
    commitHooks.set(client, new Set());
    let commit = true;
    const result = await work(client, { rollbackOnly: () => (commit = false) });
    if (commit) {
      // The last moment to give up cleanly: after COMMIT the change is done whatever happens.
      throwIfDone();
    }
    open = false;
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    if (commit) runCommitHooks(commitHooks.get(client));
    return result;
  } catch (error) {
    if (open) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        // A connection that cannot even roll back is discarded, not returned to the pool.
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
    }
    throw translateDatabaseError(error) ?? error;
  } finally {
    commitHooks.delete(client);
    client.release(broken);
  }
}
