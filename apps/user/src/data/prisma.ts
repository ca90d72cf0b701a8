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
    // Fail fast when the database is unreachable instead of queueing forever.
    connectionTimeoutMillis: 2_000,
  });
  return new PrismaClient({ adapter });
}
