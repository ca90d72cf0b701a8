/**
 * Waking the outbox relay when an event was written, without a NOTIFY in the writing transaction.
 *
 * A NOTIFY inside a transaction makes its COMMIT take a lock global to the database, while the
 * transaction still holds its row locks: every order that NOTIFYs commits one after the other.
 * Measured with `pnpm bench --scenario b1,s3`: S3 (orders) served 183 req/s with the NOTIFY in the
 * order's transaction and 256 req/s without it. So a writer in a process that runs a relay (every
 * service started with `startServiceEvents`) wakes it in-process once its transaction committed
 * (`afterCommit` of @repo/database/transaction); a relay that is a standby there passes the wake on
 * to the leader, in another replica, with a NOTIFY of its own outside any transaction, at most one
 * in flight per process (./relay). A writer with no relay in its process, or outside `inTransaction`,
 * still NOTIFYs from its statement (./outbox): correct everywhere, fast where it matters.
 */

/** The NOTIFY channel the relay listens on. */
export const OUTBOX_CHANNEL = 'outbox';

/** What a relay does when an event was committed in its process. */
export interface LocalRelay {
  outboxWritten(): void;
}

const localRelays = new Set<LocalRelay>();

/** A relay starting (true) or stopping (false) in this process. */
export function registerLocalRelay(relay: LocalRelay, running: boolean): void {
  if (running) localRelays.add(relay);
  else localRelays.delete(relay);
}

/** True when a relay runs in this process, to be woken after commit. */
export function hasLocalRelay(): boolean {
  return localRelays.size > 0;
}

/** Wakes every relay of this process (an afterCommit hook: one function, registered once). */
export function wakeLocalRelays(): void {
  for (const relay of localRelays) relay.outboxWritten();
}

/**
 * A notification sent by `send`, at most one in flight: asked for again while one is on its way,
 * it is sent once more when that one is done, however many times it was asked meanwhile. Stops
 * sending once `stopped()` says so. A failed send is dropped: listeners find the work at their next
 * poll. (The relay's NOTIFY to the leader, the PostgreSQL broker's NOTIFY to its consumers.)
 */
export function coalescedNotifier(
  send: () => Promise<unknown>,
  stopped: () => boolean,
): () => void {
  let state: 'idle' | 'sending' | 'again' = 'idle';
  const notify = (): void => {
    if (state !== 'idle') {
      state = 'again';
      return;
    }
    state = 'sending';
    send()
      .catch(() => undefined)
      .finally(() => {
        const again = state === 'again';
        state = 'idle';
        if (again && !stopped()) notify();
      });
  };
  return notify;
}
