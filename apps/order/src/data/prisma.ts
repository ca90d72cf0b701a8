import { PrismaPg } from '@prisma/adapter-pg';
import { Pool } from 'pg';
import { PrismaClient } from './generated/prisma/client';

export type { PrismaClient } from './generated/prisma/client';

export interface DatabaseOptions {
  connectionString: string;
  /** Connections in the pg pool. */
  poolSize: number;
}

/**
 * The order service's database access: one node-postgres pool, used by Prisma (through its pg driver
 * adapter: no native query engine) and, for the hottest primary-key read, directly by the
 * repository (see there why).
 */
export interface Database {
  prisma: PrismaClient;
  pool: Pool;
  close(): Promise<void>;
}

export function createDatabase(options: DatabaseOptions): Database {
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
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
