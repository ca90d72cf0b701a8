import { Pool, type PoolConfig } from 'pg';

/**
 * A `pg` pool that survives its database going away, the one way every pool here is made.
 *
 * A pg client whose connection ends unexpectedly emits 'error', and an 'error' event with no
 * listener is thrown by Node: the process dies. pg-pool listens on its idle clients (and re-emits
 * on the pool, hence the pool's listener below), but takes its listener off a client while it is
 * checked out: a transaction, the relay's LISTEN connection, a broker claim. So a database
 * restart, a failover or a dropped connection while one of those was under way crashed the
 * process. (CI saw the outbox relay exit this way when its broker was cut off, and a service's
 * transaction is checked out just the same.)
 *
 * Here every client gets a listener of its own for its whole life. Nothing else is needed: the
 * statement under way on the lost connection fails with the connection error (translated to
 * UNAVAILABLE where services answer), a later one on the same client fails with "not queryable",
 * and pg-pool discards a client that is no longer queryable when it is released, so the next
 * checkout connects afresh.
 */
export function createPool(config: PoolConfig): Pool {
  const pool = new Pool(config);
  pool.on('connect', (client) => client.on('error', ignore));
  // An idle client's connection ended: the pool has dropped it and re-emits the error here.
  pool.on('error', ignore);
  return pool;
}

function ignore(): void {
  // The failure reaches whoever uses the connection next (see above); health checks report it.
}
