import {
  createPrismaDatabase,
  type DatabaseOptions,
  type PrismaDatabase,
} from '@repo/database/prisma';
import { PrismaClient } from './generated/prisma/client';

export type { PrismaClient } from './generated/prisma/client';

/** The order service's database: its Prisma client and the pg pool beneath it (see @repo/database/prisma). */
export type Database = PrismaDatabase<PrismaClient>;

export function createDatabase(options: DatabaseOptions): Database {
  return createPrismaDatabase((adapter) => new PrismaClient({ adapter }), options);
}
