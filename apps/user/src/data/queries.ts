// Every SQL statement the user service runs on the pg pool directly, typed against the table as
// schema.prisma declares it (generated/kysely) and compiled once (see @repo/database/sql).
import { sqlBuilder, statement, type Param } from '@repo/database/sql';
import { sql } from 'kysely';
import type { DB } from './generated/kysely/types';

const db = sqlBuilder<DB>();
const now = sql<Date>`now()`;

/** The columns other services may see (never the password hash), as the domain names them. */
const PUBLIC_COLUMNS = [
  'id',
  'email',
  'name',
  'created_at as createdAt',
  'updated_at as updatedAt',
] as const;

export const userById = statement('user_by_id', (param: Param<{ id: string }>) =>
  db.selectFrom('users').select(PUBLIC_COLUMNS).where('id', '=', param('id')),
);

export const emailTaken = statement('email_taken', (param: Param<{ emailNormalized: string }>) =>
  db.selectFrom('users').select('id').where('email_normalized', '=', param('emailNormalized')),
);

/** A transaction-scoped advisory lock on a CreateUser idempotency key; false when taken. */
export const lockIdempotencyKey = statement(
  'lock_user_idempotency_key',
  (param: Param<{ key: string }>) =>
    db.selectNoFrom(
      sql<boolean>`pg_try_advisory_xact_lock(hashtextextended('create-user:' || ${param('key')}, 0))`.as(
        'locked',
      ),
    ),
);

export const userByIdempotencyKey = statement(
  'user_by_idempotency_key',
  (param: Param<{ key: string }>) =>
    db
      .selectFrom('users')
      .select([
        ...PUBLIC_COLUMNS,
        'password_hash as passwordHash',
        'request_fingerprint as requestFingerprint',
      ])
      .where('idempotency_key', '=', param('key')),
);

export const releaseIdempotencyKey = statement(
  'release_user_idempotency_key',
  (param: Param<{ id: string }>) =>
    db.updateTable('users').set({ idempotency_key: null }).where('id', '=', param('id')),
);

export const insertUser = statement(
  'insert_user',
  (
    param: Param<{
      email: string;
      emailNormalized: string;
      name: string;
      passwordHash: string;
      key: string | null;
      fingerprint: string | null;
    }>,
  ) =>
    db
      .insertInto('users')
      .values({
        email: param('email'),
        email_normalized: param('emailNormalized'),
        name: param('name'),
        password_hash: param('passwordHash'),
        idempotency_key: param('key'),
        request_fingerprint: param('fingerprint'),
        updated_at: now,
      })
      .returning(PUBLIC_COLUMNS),
);

export const updateName = statement(
  'update_user_name',
  (param: Param<{ id: string; name: string }>) =>
    db
      .updateTable('users')
      .set({ name: param('name'), updated_at: now })
      .where('id', '=', param('id'))
      .returning(PUBLIC_COLUMNS),
);

export const deleteUser = statement('delete_user', (param: Param<{ id: string }>) =>
  db.deleteFrom('users').where('id', '=', param('id')),
);
