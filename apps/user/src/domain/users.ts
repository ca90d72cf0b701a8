import { BoundedQueue } from '@repo/service-kit/bounded-queue';
import { throwIfDone } from '@repo/service-kit/deadline';
import { DomainError } from '@repo/service-kit/errors';
import { isUuid, requireUuids } from '@repo/service-kit/ids';
import {
  IDEMPOTENCY_KEY_TTL_MS,
  idempotencyKeyInProgress,
  idempotencyKeyReused,
  requestFingerprint,
} from '@repo/service-kit/idempotency';
import {
  decodePageToken,
  encodePageToken,
  normalizePageSize,
  parseCursorTime,
} from '@repo/service-kit/pagination';
import { dummyPasswordHash, hashPassword, verifyPassword } from './password';
import type { User } from './user';
import { emailTakenError, type KeyedUser, type UserRepository } from './user-repository';
import { normalizeEmail, validateName, validateNewUser, type NewUserInput } from './validation';

export const BATCH_GET_MAX = 100;
const INVALID_CREDENTIALS = 'invalid email or password';

const notFound = (id: string) => new DomainError('NOT_FOUND', `user ${id} not found`);

export interface UsersOptions {
  /**
   * Where password hashing and verification run: bounded concurrency and a bounded queue, so that
   * a burst sheds (RESOURCE_EXHAUSTED) instead of queueing CPU work nobody will wait for.
   */
  hashing?: BoundedQueue;
  /** How long an idempotency key is remembered (see @repo/service-kit/idempotency). */
  keyTtlMs?: number;
}

/** Defaults for tests and tools; main.ts sizes the queue from its config. */
export const DEFAULT_HASHING = {
  name: 'password hashing',
  concurrency: 2,
  maxQueued: 64,
  maxWaitMs: 500,
  initialEstimateMs: 50,
} as const;

/**
 * The user service's use cases. Transport calls these; these call the repository. All rules
 * (validation, hashing, credential checks, paging) live here.
 */
export class Users {
  private readonly hashing: BoundedQueue;
  private readonly keyTtlMs: number;

  constructor(
    private readonly repository: UserRepository,
    options: UsersOptions = {},
  ) {
    this.hashing = options.hashing ?? new BoundedQueue(DEFAULT_HASHING);
    this.keyTtlMs = options.keyTtlMs ?? IDEMPOTENCY_KEY_TTL_MS;
  }

  /**
   * Registers a user. The expensive step, hashing the password, runs last and only when it can
   * matter: a taken email is refused first (registration reveals taken emails anyway, by design of
   * the 409), and the hash waits in the bounded queue, which sheds load when it is saturated. With
   * an idempotency key, a retry returns the user the first call created.
   */
  async create(input: NewUserInput): Promise<User> {
    const user = validateNewUser(input);
    const key = user.idempotencyKey;
    // Email and name only: a fingerprint of the password would be a fast hash of it, stored.
    const fingerprint = requestFingerprint([user.emailNormalized, user.name]);
    if (key) {
      const existing = await this.repository.findByIdempotencyKey(key, this.keyTtlMs);
      if (existing) return this.replay(existing, fingerprint, user.password);
    }
    if (await this.repository.emailTaken(user.emailNormalized)) throw emailTakenError();
    const passwordHash = await this.hashing.run(() => hashPassword(user.password));
    throwIfDone();
    const result = await this.repository.create(
      {
        email: user.email,
        emailNormalized: user.emailNormalized,
        name: user.name,
        passwordHash,
      },
      key ? { key, requestFingerprint: fingerprint, ttlMs: this.keyTtlMs } : undefined,
    );
    switch (result.kind) {
      case 'created':
        return result.user;
      case 'duplicate-key':
        return this.replay(result, fingerprint, user.password);
      case 'key-in-use':
        throw idempotencyKeyInProgress();
    }
  }

  /** The same key came back: the same request gets the same user, another request is refused. */
  private async replay(found: KeyedUser, fingerprint: string, password: string): Promise<User> {
    const sameRequest =
      (found.requestFingerprint === undefined || found.requestFingerprint === fingerprint) &&
      (await this.hashing.run(() => verifyPassword(password, found.user.passwordHash)));
    if (!sameRequest) throw idempotencyKeyReused();
    const { passwordHash: _omitted, ...user } = found.user;
    return user;
  }

  /** A malformed id is INVALID_ARGUMENT (field `id`) and never reaches the database. */
  async get(id: string): Promise<User> {
    const user = await this.repository.findById(requireUuids({ id }).id);
    if (!user) throw notFound(id);
    return user;
  }

  /** The users that exist among `ids`, in the order asked, each once. */
  async batchGet(ids: readonly string[]): Promise<User[]> {
    if (ids.length > BATCH_GET_MAX) {
      throw DomainError.invalid([
        { field: 'ids', description: `must hold at most ${BATCH_GET_MAX} ids`, reason: 'TOO_MANY' },
      ]);
    }
    const wanted = [...new Set(ids.filter(isUuid).map((id) => id.toLowerCase()))];
    if (wanted.length === 0) return [];
    const found = new Map((await this.repository.findByIds(wanted)).map((user) => [user.id, user]));
    return wanted.flatMap((id) => found.get(id) ?? []);
  }

  async list(
    pageSize: number,
    pageToken: string,
  ): Promise<{ users: User[]; nextPageToken: string }> {
    const limit = normalizePageSize(pageSize);
    const cursor = decodePageToken(pageToken, ['t', 'id']);
    let after: { createdAt: Date; id: string } | undefined;
    if (cursor) {
      const createdAt = parseCursorTime(cursor.t);
      if (Number.isNaN(createdAt.getTime()) || !isUuid(cursor.id)) {
        throw DomainError.invalid([
          { field: 'page_token', description: 'is not a page token returned by this API' },
        ]);
      }
      after = { createdAt, id: cursor.id };
    }
    // One extra row tells whether another page exists without a COUNT.
    const rows = await this.repository.list(after, limit + 1);
    const users = rows.slice(0, limit);
    const last = users.at(-1);
    const nextPageToken =
      rows.length > limit && last
        ? encodePageToken({ t: last.createdAt.toISOString(), id: last.id })
        : '';
    return { users, nextPageToken };
  }

  /** A malformed id is INVALID_ARGUMENT, as in GetUser; a well-formed unknown one NOT_FOUND. */
  async updateName(id: string, name: string): Promise<User> {
    const valid = validateName(name);
    const user = await this.repository.updateName(requireUuids({ id }).id, valid);
    if (!user) throw notFound(id);
    return user;
  }

  async delete(id: string): Promise<void> {
    const deleted = await this.repository.delete(requireUuids({ id }).id);
    if (!deleted) throw notFound(id);
  }

  /**
   * The same answer, and about the same time, for an unknown email and a wrong password: both run
   * one scrypt verification, so neither the message nor the latency reveals which emails exist.
   */
  async verifyCredentials(email: string, password: string): Promise<User> {
    const found =
      email.trim() === ''
        ? undefined
        : await this.repository.findByEmailWithCredentials(normalizeEmail(email));
    const hash = found?.passwordHash ?? (await dummyPasswordHash());
    const matches = await this.hashing.run(() => verifyPassword(password, hash));
    if (!found || !matches) throw new DomainError('UNAUTHENTICATED', INVALID_CREDENTIALS);
    const { passwordHash: _omitted, ...user } = found;
    return user;
  }
}
