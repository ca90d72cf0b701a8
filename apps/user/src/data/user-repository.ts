import { DomainError } from '@repo/service-kit/errors';
import type { User, UserWithCredentials } from '../domain/user';
import type {
  CreateUserResult,
  CreationKey,
  KeyedUser,
  NewUserRecord,
  UserCursor,
  UserRepository,
} from '../domain/user-repository';
import { inTransaction } from '@repo/database/transaction';
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

/** The same columns for raw SQL, named as the domain's User. */
const PUBLIC_COLUMNS =
  'id::text AS id, email, name, created_at AS "createdAt", updated_at AS "updatedAt"';

type Queryable = Pick<Pool, 'query'>;

/** The only code in the user service that touches Prisma. */
export class PrismaUserRepository implements UserRepository {
  private readonly prisma: PrismaClient;
  private readonly pool: Pool;

  constructor(database: Database) {
    this.prisma = database.prisma;
    this.pool = database.pool;
  }

  /**
   * One transaction bound by the caller's deadline (`inTransaction`): the insert commits only while
   * the deadline holds. With a key, a transaction-scoped advisory lock on it tells a concurrent call
   * with the same key (`key-in-use`) from a retry after the first one committed (`duplicate-key`).
   */
  async create(user: NewUserRecord, key?: CreationKey): Promise<CreateUserResult> {
    return inTransaction(this.pool, async (client, control): Promise<CreateUserResult> => {
      if (key) {
        const { rows } = await client.query<{ locked: boolean }>({
          name: 'lock_user_idempotency_key',
          text: `SELECT pg_try_advisory_xact_lock(hashtextextended('create-user:' || $1, 0)) AS locked`,
          values: [key.key],
        });
        if (!rows[0]!.locked) return { kind: 'key-in-use' };
        const existing = await this.keyed(client, key.key);
        if (existing) {
          if (existing.user.createdAt.getTime() > Date.now() - key.ttlMs) {
            control.rollbackOnly();
            return { kind: 'duplicate-key', ...existing };
          }
          // Remembered long enough: the key is free for a new request.
          await client.query({
            name: 'release_user_idempotency_key',
            text: 'UPDATE users SET idempotency_key = NULL WHERE id = $1',
            values: [existing.user.id],
          });
        }
      }
      try {
        const { rows } = await client.query<User>({
          name: 'insert_user',
          text: `INSERT INTO users (email, email_normalized, name, password_hash, idempotency_key, request_fingerprint, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now())
                 RETURNING ${PUBLIC_COLUMNS}`,
          values: [
            user.email,
            user.emailNormalized,
            user.name,
            user.passwordHash,
            key?.key ?? null,
            key?.requestFingerprint ?? null,
          ],
        });
        return { kind: 'created', user: rows[0]! };
      } catch (error) {
        // 23505: the unique index on email_normalized. Concurrent creates race here, and exactly
        // one wins: the database, not a check-then-insert, decides.
        if ((error as { code?: unknown }).code === '23505') {
          throw new DomainError('ALREADY_EXISTS', 'a user with this email already exists', [], {
            cause: error,
          });
        }
        throw error;
      }
    });
  }

  async emailTaken(emailNormalized: string): Promise<boolean> {
    const { rowCount } = await this.pool.query({
      name: 'email_taken',
      text: 'SELECT 1 FROM users WHERE email_normalized = $1',
      values: [emailNormalized],
    });
    return (rowCount ?? 0) > 0;
  }

  private async keyed(client: Queryable, key: string): Promise<KeyedUser | undefined> {
    const { rows } = await client.query<
      UserWithCredentials & { requestFingerprint: string | null }
    >({
      name: 'user_by_idempotency_key',
      text: `SELECT ${PUBLIC_COLUMNS}, password_hash AS "passwordHash", request_fingerprint AS "requestFingerprint"
               FROM users WHERE idempotency_key = $1`,
      values: [key],
    });
    const row = rows[0];
    if (!row) return undefined;
    const { requestFingerprint, ...found } = row;
    return { user: found, requestFingerprint: requestFingerprint ?? undefined };
  }

  async findByIdempotencyKey(key: string, ttlMs: number): Promise<KeyedUser | undefined> {
    const found = await this.keyed(this.pool, key);
    return found && found.user.createdAt.getTime() > Date.now() - ttlMs ? found : undefined;
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
      text: `SELECT ${PUBLIC_COLUMNS} FROM users WHERE id = $1`,
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

  /** Single statements, but still bound by the deadline: they commit only while it holds. */
  async updateName(id: string, name: string): Promise<User | undefined> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<User>({
        name: 'update_user_name',
        text: `UPDATE users SET name = $2, updated_at = now() WHERE id = $1 RETURNING ${PUBLIC_COLUMNS}`,
        values: [id, name],
      });
      return rows[0];
    });
  }

  async delete(id: string): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      const { rowCount } = await client.query({
        name: 'delete_user',
        text: 'DELETE FROM users WHERE id = $1',
        values: [id],
      });
      return (rowCount ?? 0) > 0;
    });
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
