import { createTestDatabase, type TestDatabase } from '@repo/database/testing';
import { DomainError } from '@repo/service-kit/errors';
import type { NewUserRecord } from '../src/domain/user-repository';
import { createDatabase, type Database } from '../src/data/prisma';
import { PrismaUserRepository } from '../src/data/user-repository';

describe('PrismaUserRepository against PostgreSQL', () => {
  let database: TestDatabase;
  let db: Database;
  let repository: PrismaUserRepository;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDatabase({ connectionString: database.url, poolSize: 5 });
    repository = new PrismaUserRepository(db);
  });

  afterAll(async () => {
    await db.close();
    await database.drop();
  });

  /** Creates a user (no idempotency key) and returns it. */
  const create = async (user: NewUserRecord) => {
    const result = await repository.create(user);
    if (result.kind !== 'created') throw new Error(`not created: ${result.kind}`);
    return result.user;
  };
  const newUser = (n: number | string) => ({
    email: `User${n}@Example.com`,
    emailNormalized: `user${n}@example.com`,
    name: `User ${n}`,
    passwordHash: 'scrypt$1$1$1$c2FsdA==$aGFzaA==',
  });

  it('creates a user with a UUID and timestamps, and never returns the hash', async () => {
    const user = await create(newUser('a'));
    expect(user.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(user.createdAt).toBeInstanceOf(Date);
    expect(user).not.toHaveProperty('passwordHash');
    expect(await repository.findById(user.id)).toEqual(user);
  });

  it('refuses a second user with the same normalized email', async () => {
    await create(newUser('dup'));
    await expect(create({ ...newUser('dup'), email: 'USERDUP@example.com' })).rejects.toMatchObject(
      {
        code: 'ALREADY_EXISTS',
      },
    );
    await expect(create(newUser('dup'))).rejects.toBeInstanceOf(DomainError);
  });

  it('finds credentials by normalized email', async () => {
    await create(newUser('cred'));
    const found = await repository.findByEmailWithCredentials('usercred@example.com');
    expect(found?.passwordHash).toBe('scrypt$1$1$1$c2FsdA==$aGFzaA==');
    expect(await repository.findByEmailWithCredentials('nobody@example.com')).toBeUndefined();
  });

  it('pages by (createdAt, id) without gaps or repeats', async () => {
    for (let i = 0; i < 7; i++) await create(newUser(`page${i}`));
    const all = await repository.list(undefined, 1000);
    const seen: string[] = [];
    let after: { createdAt: Date; id: string } | undefined;
    for (;;) {
      const page = await repository.list(after, 3);
      seen.push(...page.map((user) => user.id));
      const last = page.at(-1);
      if (page.length < 3 || !last) break;
      after = { createdAt: last.createdAt, id: last.id };
    }
    expect(seen).toEqual(all.map((user) => user.id));
    const times = all.map((user) => user.createdAt.getTime());
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it('updates a name, and reports a missing user as undefined', async () => {
    const user = await create(newUser('upd'));
    const updated = await repository.updateName(user.id, 'Renamed');
    expect(updated?.name).toBe('Renamed');
    expect(updated!.updatedAt.getTime()).toBeGreaterThanOrEqual(user.updatedAt.getTime());
    expect(
      await repository.updateName('00000000-0000-4000-8000-000000000000', 'x'),
    ).toBeUndefined();
  });

  it('deletes once', async () => {
    const user = await create(newUser('del'));
    expect(await repository.delete(user.id)).toBe(true);
    expect(await repository.delete(user.id)).toBe(false);
    expect(await repository.findById(user.id)).toBeUndefined();
  });

  it('finds several by id', async () => {
    const a = await create(newUser('ba'));
    const b = await create(newUser('bb'));
    const found = await repository.findByIds([a.id, b.id, '00000000-0000-4000-8000-000000000000']);
    expect(found.map((user) => user.id).sort()).toEqual([a.id, b.id].sort());
  });
});
