import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client';

export type { PrismaClient } from './generated/prisma/client';

export interface PrismaOptions {
  connectionString: string;
  /** Connections in the pg pool. */
  poolSize: number;
}

/** The user service's Prisma client, over node-postgres (no native query engine). */
export function createPrismaClient(options: PrismaOptions): PrismaClient {
  const adapter = new PrismaPg({
    connectionString: options.connectionString,
    max: options.poolSize,
    // Bounds both connecting and waiting for a free pooled connection: fail within 5 s when the
    // database is unreachable instead of queueing forever, but ride out short bursts.
    connectionTimeoutMillis: 5_000,
  });
  return new PrismaClient({ adapter });
}
