import type { User, UserWithCredentials } from './user';

/** Keyset position for ListUsers: users are ordered by (createdAt, id). */
export interface UserCursor {
  createdAt: Date;
  id: string;
}

/** What the domain needs from storage. Implemented with Prisma in src/data/. */
export interface UserRepository {
  /** Throws DomainError ALREADY_EXISTS when the normalized email is taken. */
  create(user: {
    email: string;
    emailNormalized: string;
    name: string;
    passwordHash: string;
  }): Promise<User>;
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
