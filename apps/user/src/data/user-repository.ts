import { DomainError } from '@repo/service-kit/errors';
import type { User, UserWithCredentials } from '../domain/user';
import type { UserCursor, UserRepository } from '../domain/user-repository';
import type { Pool } from 'pg';
import type { Database, PrismaClient } from './prisma';

/** Columns other services may see: never the password hash. */
const PUBLIC_FIELDS = {
  id: true,
  email: true,
  name: true,
  createdAt: true,
  updatedAt: true,
} as const;

const isPrismaError = (error: unknown, code: string) =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;

/** The only code in the user service that touches Prisma. */
export class PrismaUserRepository implements UserRepository {
  private readonly prisma: PrismaClient;
  private readonly pool: Pool;

  constructor(database: Database) {
    this.prisma = database.prisma;
    this.pool = database.pool;
  }

  async create(user: {
    email: string;
    emailNormalized: string;
    name: string;
    passwordHash: string;
  }): Promise<User> {
    try {
      return await this.prisma.user.create({ data: user, select: PUBLIC_FIELDS });
    } catch (error) {
      // P2002: the unique index on email_normalized. Concurrent creates race here, and exactly
      // one wins: the database, not a check-then-insert, decides.
      if (isPrismaError(error, 'P2002')) {
        throw new DomainError('ALREADY_EXISTS', 'a user with this email already exists', [], {
          cause: error,
        });
      }
      throw error;
    }
  }

  /**
   * The hottest read (every authenticated request asks for its user), so it goes straight to the
   * pg pool Prisma itself uses. Prisma 6's client engine runs each query, raw ones included, through
   * its WebAssembly query compiler and interpreter, which took a third of this service's CPU under
   * load (`pnpm run profile user --scenario s2`). Still one parameterised statement; everything else
   * goes through Prisma.
   */
  async findById(id: string): Promise<User | undefined> {
    const { rows } = await this.pool.query<User>({
      name: 'user_by_id',
      text: 'SELECT id::text AS id, email, name, created_at AS "createdAt", updated_at AS "updatedAt" FROM users WHERE id = $1',
      values: [id],
    });
    return rows[0];
  }

  findByIds(ids: readonly string[]): Promise<User[]> {
    return this.prisma.user.findMany({ where: { id: { in: [...ids] } }, select: PUBLIC_FIELDS });
  }

  async findByEmailWithCredentials(
    emailNormalized: string,
  ): Promise<UserWithCredentials | undefined> {
    return (
      (await this.prisma.user.findUnique({
        where: { emailNormalized },
        select: { ...PUBLIC_FIELDS, passwordHash: true },
      })) ?? undefined
    );
  }

  list(after: UserCursor | undefined, limit: number): Promise<User[]> {
    return this.prisma.user.findMany({
      where: after
        ? {
            OR: [
              { createdAt: { gt: after.createdAt } },
              { createdAt: after.createdAt, id: { gt: after.id } },
            ],
          }
        : {},
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      take: limit,
      select: PUBLIC_FIELDS,
    });
  }

  async updateName(id: string, name: string): Promise<User | undefined> {
    try {
      return await this.prisma.user.update({
        where: { id },
        data: { name },
        select: PUBLIC_FIELDS,
      });
    } catch (error) {
      if (isPrismaError(error, 'P2025')) return undefined; // no such record
      throw error;
    }
  }

  async delete(id: string): Promise<boolean> {
    const { count } = await this.prisma.user.deleteMany({ where: { id } });
    return count > 0;
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
