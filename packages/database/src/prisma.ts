import { PrismaPg } from '@prisma/adapter-pg';
import { Pool } from 'pg';
import type { PoolStats } from '@repo/service-kit/metrics';

export interface DatabaseOptions {
  connectionString: string;
  /** Connections in the pg pool. */
  poolSize: number;
}

/**
 * A service's database access: one node-postgres pool, used by the service's Prisma client (through
 * the pg driver adapter: no native query engine) and, for the hottest queries, directly by its
 * repository (Prisma 6 compiles every query in WebAssembly, which profiling showed to be most of a
 * service's CPU on hot paths).
 */
export interface PrismaDatabase<C> {
  prisma: C;
  pool: Pool;
  /** The pool's connections now (for the db_pool_* gauges, read when scraped). */
  poolStats(): PoolStats;
  close(): Promise<void>;
}

/** `createClient` builds the service's own generated PrismaClient around the adapter. */
export function createPrismaDatabase<C extends { $disconnect(): Promise<void> }>(
  createClient: (adapter: PrismaPg) => C,
  options: DatabaseOptions,
): PrismaDatabase<C> {
  const pool = new Pool({
    connectionString: options.connectionString,
    max: options.poolSize,
    // Bounds both connecting and waiting for a free pooled connection: fail within 5 s when the
    // database is unreachable instead of queueing forever, but ride out short bursts.
    connectionTimeoutMillis: 5_000,
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that
  // would crash the process. The next checkout reconnects; health checks report the outage.
  pool.on('error', () => undefined);
  const prisma = createClient(new PrismaPg(pool));
  return {
    prisma,
    pool,
    poolStats: () => ({
      inUse: pool.totalCount - pool.idleCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }),
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
