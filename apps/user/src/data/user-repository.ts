import type { User, UserWithCredentials } from '../domain/user';
import {
  emailTakenError,
  type CreateUserResult,
  type CreationKey,
  type KeyedUser,
  type NewUserRecord,
  type UserCursor,
  type UserRepository,
} from '../domain/user-repository';
import { UserDeleted, UserRegistered } from '@repo/contracts/user/v1/events';
import type { Queryable } from '@repo/database/sql';
import { inTransaction } from '@repo/database/transaction';
import type { NewEvent } from '@repo/events/envelope';
import { appendEvent } from '@repo/events/outbox';
import { EventTypes } from '@repo/events/subjects';
import { currentTraceHeaders } from '@repo/service-kit/tracing';
import * as sql from './queries';
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

/**
 * Writes an event of this service to its outbox on `tx`, the transaction of the change it
 * describes, with the trace context of the request that caused it (@repo/events/outbox).
 */
function publishInTransaction(
  tx: Queryable,
  event: Pick<NewEvent, 'type' | 'aggregateId' | 'payload'>,
): Promise<bigint> {
  return appendEvent(tx, { ...event, source: 'user', ...currentTraceHeaders() });
}

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
        const { rows } = await sql.lockIdempotencyKey.run(client, { key: key.key });
        if (!rows[0]!.locked) return { kind: 'key-in-use' };
        const existing = await this.keyed(client, key.key);
        if (existing) {
          if (existing.user.createdAt.getTime() > Date.now() - key.ttlMs) {
            control.rollbackOnly();
            return { kind: 'duplicate-key', ...existing };
          }
          // Remembered long enough: the key is free for a new request.
          await sql.releaseIdempotencyKey.run(client, { id: existing.user.id });
        }
      }
      try {
        const { rows } = await sql.insertUser.run(client, {
          email: user.email,
          emailNormalized: user.emailNormalized,
          name: user.name,
          passwordHash: user.passwordHash,
          key: key?.key ?? null,
          fingerprint: key?.requestFingerprint ?? null,
        });
        const created = rows[0]!;
        // Same transaction: the event exists if and only if the user does.
        await publishInTransaction(client, {
          type: EventTypes.UserRegistered,
          aggregateId: created.id,
          payload: UserRegistered.encode({
            userId: created.id,
            email: created.email,
            name: created.name,
          }).finish(),
        });
        return { kind: 'created', user: created };
      } catch (error) {
        // 23505: the unique index on email_normalized. Concurrent creates race here, and exactly
        // one wins: the database, not a check-then-insert, decides.
        if ((error as { code?: unknown }).code === '23505') {
          throw emailTakenError(error);
        }
        throw error;
      }
    });
  }

  async emailTaken(emailNormalized: string): Promise<boolean> {
    const { rowCount } = await sql.emailTaken.run(this.pool, { emailNormalized });
    return (rowCount ?? 0) > 0;
  }

  private async keyed(client: Queryable, key: string): Promise<KeyedUser | undefined> {
    const { rows } = await sql.userByIdempotencyKey.run(client, { key });
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
   * load (`pnpm run profile user --scenario s2`). Still one parameterised statement, typed against
   * the schema and compiled once (./queries.ts), like the writes; the other reads go through Prisma.
   */
  async findById(id: string): Promise<User | undefined> {
    const { rows } = await sql.userById.run(this.pool, { id });
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
      const { rows } = await sql.updateName.run(client, { id, name });
      return rows[0];
    });
  }

  /** Deletes the user and announces it (UserDeleted) in the same transaction. */
  async delete(id: string): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      const { rowCount } = await sql.deleteUser.run(client, { id });
      if (!rowCount) return false;
      await publishInTransaction(client, {
        type: EventTypes.UserDeleted,
        aggregateId: id,
        payload: UserDeleted.encode({ userId: id, reason: 'account deleted' }).finish(),
      });
      return true;
    });
  }

  /** For health checks; on the pool directly, so start-up does not wait for Prisma's engine. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
