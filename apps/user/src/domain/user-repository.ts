import { DomainError } from '@repo/service-kit/errors';
import type { User, UserWithCredentials } from './user';

/** Keyset position for ListUsers: users are ordered by (createdAt, id). */
export interface UserCursor {
  createdAt: Date;
  id: string;
}

export interface NewUserRecord {
  email: string;
  emailNormalized: string;
  name: string;
  passwordHash: string;
}

/** The idempotency key a user is created with, and the fingerprint of that request. */
export interface CreationKey {
  key: string;
  requestFingerprint: string;
  /** How long a key is remembered; an older one is released for the new request. */
  ttlMs: number;
}

/** A user found by the idempotency key it was created with. */
export interface KeyedUser {
  user: UserWithCredentials;
  /** Undefined for users created before fingerprints were stored: they match any request. */
  requestFingerprint: string | undefined;
}

export type CreateUserResult =
  | { kind: 'created'; user: User }
  /** A live user was already created with this key. */
  | ({ kind: 'duplicate-key' } & KeyedUser)
  /** Another call with this key is creating its user right now. */
  | { kind: 'key-in-use' };

/** ALREADY_EXISTS: the normalized email is taken (by the domain's check, or the unique index). */
export const emailTakenError = (cause?: unknown) =>
  new DomainError('ALREADY_EXISTS', 'a user with this email already exists', [], { cause });

/** What the domain needs from storage. Implemented with Prisma in src/data/. */
export interface UserRepository {
  /**
   * In one transaction bound by the caller's deadline. Throws DomainError ALREADY_EXISTS when the
   * normalized email is taken. With a key: holds it for the transaction, returns the live user
   * already created with it, releases an expired one.
   */
  create(user: NewUserRecord, key?: CreationKey): Promise<CreateUserResult>;
  /** True when an account with this normalized email exists. */
  emailTaken(emailNormalized: string): Promise<boolean>;
  /** The user created with this key within the last `ttlMs`, if any. */
  findByIdempotencyKey(key: string, ttlMs: number): Promise<KeyedUser | undefined>;
  findById(id: string): Promise<User | undefined>;
  findByIds(ids: readonly string[]): Promise<User[]>;
  findByEmailWithCredentials(emailNormalized: string): Promise<UserWithCredentials | undefined>;
  /** Up to `limit` users after `after`, in (createdAt, id) order. */
  list(after: UserCursor | undefined, limit: number): Promise<User[]>;
  /** Undefined when there is no such user. */
  updateName(id: string, name: string): Promise<User | undefined>;
  /** False when there was no such user. */
  delete(id: string): Promise<boolean>;
  /** Resolves when the database answers (for health checks). */
  ping(): Promise<void>;
}
