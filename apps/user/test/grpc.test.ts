import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { Client } from 'pg';
import { createTestDatabase, startTcpProxy, type TestDatabase } from '@repo/database/testing';
import type { CreateUserRequest } from '@repo/contracts/user/v1';
import { fieldViolationsOf } from '@repo/service-kit/errors';
import { startUserService, type RunningUserService } from './harness';
import { checkHealth } from '@repo/service-kit/health-client';
import { eventually, rejectionOf } from '@repo/service-kit/testing';

const PASSWORD = 'correct horse battery staple';
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

const failure = (promise: Promise<unknown>) => rejectionOf<ServiceError>(promise);

describe('user.v1.UserService over gRPC', () => {
  let database: TestDatabase;
  let service: RunningUserService;
  let counter = 0;
  const email = () => `person${++counter}@example.com`;
  /** CreateUser without an idempotency key unless the test gives one. */
  const createUser = (
    request: Omit<CreateUserRequest, 'idempotencyKey'> & { idempotencyKey?: string },
  ) => service.client.createUser({ idempotencyKey: '', ...request });

  beforeAll(async () => {
    database = await createTestDatabase();
    service = await startUserService(database.url);
  });

  afterAll(async () => {
    await service.stop();
    await database.drop();
  });

  describe('CreateUser', () => {
    it('creates a user and never returns the password or its hash', async () => {
      const { user } = await createUser({
        email: ' Ada@Example.com ',
        name: 'Ada',
        password: PASSWORD,
      });
      expect(user).toMatchObject({ email: 'Ada@Example.com', name: 'Ada' });
      expect(user!.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(user!.createTime).toBeInstanceOf(Date);
      expect(JSON.stringify(user)).not.toMatch(/scrypt|horse/);
    });

    it('answers ALREADY_EXISTS for the same email in another case', async () => {
      const address = email();
      await createUser({ email: address, name: 'A', password: PASSWORD });
      const error = await failure(
        createUser({ email: address.toUpperCase(), name: 'B', password: PASSWORD }),
      );
      expect(error.code).toBe(status.ALREADY_EXISTS);
    });

    it('answers ALREADY_EXISTS for the decomposed spelling of an email (NFC before uniqueness)', async () => {
      const local = `jos\u00e9${++counter}`;
      await createUser({
        email: `${local}@example.com`,
        name: 'A',
        password: PASSWORD,
      });
      const error = await failure(
        createUser({
          email: `${local.normalize('NFD')}@example.com`,
          name: 'B',
          password: PASSWORD,
        }),
      );
      expect(error.code).toBe(status.ALREADY_EXISTS);
    });

    it('answers INVALID_ARGUMENT, not INTERNAL, for NUL in the email or name', async () => {
      for (const override of [{ email: `a\u0000${email()}` }, { name: 'N\u0000' }]) {
        const error = await failure(
          createUser({ email: email(), name: 'N', password: PASSWORD, ...override }),
        );
        expect(error.code).toBe(status.INVALID_ARGUMENT);
        expect(fieldViolationsOf(error).map((v) => v.field)).toEqual(Object.keys(override));
      }
    });

    it('answers INVALID_ARGUMENT with one field violation per bad field', async () => {
      const error = await failure(
        createUser({
          email: 'not-an-email',
          name: 'x'.repeat(101),
          password: 'short',
        }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error).map((v) => [v.field, v.reason])).toEqual([
        ['email', 'INVALID_FORMAT'],
        ['name', 'TOO_LONG'],
        ['password', 'TOO_SHORT'],
      ]);
    });

    it.each([
      ['an empty name', { name: '' }, 'name'],
      ['a 257-character password', { password: 'p'.repeat(257) }, 'password'],
      ['a missing email', { email: '' }, 'email'],
    ])('rejects %s', async (_label, override, field) => {
      const error = await failure(
        createUser({ email: email(), name: 'N', password: PASSWORD, ...override }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error).map((v) => v.field)).toEqual([field]);
    });

    it('creates exactly one user when 20 calls race with the same email', async () => {
      const address = email();
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          createUser({ email: address, name: `Racer ${i}`, password: PASSWORD }),
        ),
      );
      // One outcome per call, by name, so a failure shows every code that came back.
      const outcomes = results
        .map((result) =>
          result.status === 'fulfilled' ? 'OK' : status[(result.reason as ServiceError).code],
        )
        .sort();
      expect(outcomes).toEqual([...Array<string>(19).fill('ALREADY_EXISTS'), 'OK']);
    });
  });

  describe('CreateUser with an idempotency key', () => {
    const reasonsOf = (error: ServiceError) => fieldViolationsOf(error).map((v) => v.reason);

    it('returns the same user when the same request is retried with the same key', async () => {
      const request = {
        email: email(),
        name: 'Ida',
        password: PASSWORD,
        idempotencyKey: randomUUID(),
      };
      const first = await createUser(request);
      const again = await createUser(request);
      expect(again.user).toEqual(first.user);
    });

    it.each([
      ['another name', { name: 'Someone else' }],
      ['another password', { password: `${PASSWORD}!` }],
      ['another email', { email: 'other-person@example.com' }],
    ])(
      'refuses the same key with %s (IDEMPOTENCY_KEY_REUSED), creating nothing',
      async (_label, change) => {
        const request = {
          email: email(),
          name: 'Ida',
          password: PASSWORD,
          idempotencyKey: randomUUID(),
        };
        await createUser(request);
        const error = await failure(createUser({ ...request, ...change }));
        expect(error.code).toBe(status.INVALID_ARGUMENT);
        expect(reasonsOf(error)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
        if ('email' in change) {
          const login = await failure(
            service.client.verifyCredentials({ email: change.email, password: PASSWORD }),
          );
          expect(login.code).toBe(status.UNAUTHENTICATED);
        }
      },
    );

    it('refuses a malformed key', async () => {
      const error = await failure(
        createUser({ email: email(), name: 'N', password: PASSWORD, idempotencyKey: 'has space' }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error).map((v) => v.field)).toEqual(['idempotency_key']);
    });
  });

  describe('password hashing under load', () => {
    it('sheds a burst at once with RESOURCE_EXHAUSTED instead of queueing it, and serves the rest', async () => {
      const tight = await startUserService(database.url, 200, {
        concurrency: 1,
        maxQueued: 2,
        maxWaitMs: 60_000,
      });
      try {
        const results = await Promise.allSettled(
          Array.from({ length: 12 }, (_, i) =>
            tight.client.createUser({
              email: email(),
              name: `Burst ${i}`,
              password: PASSWORD,
              idempotencyKey: '',
            }),
          ),
        );
        const codes = results.map((result) =>
          result.status === 'fulfilled' ? 'OK' : status[(result.reason as ServiceError).code],
        );
        // One running and two queued get through; the other nine are refused without hashing.
        expect(codes.filter((code) => code === 'OK')).toHaveLength(3);
        expect(codes.filter((code) => code !== 'OK')).toEqual(Array(9).fill('RESOURCE_EXHAUSTED'));
      } finally {
        await tight.stop();
      }
    });

    it('drops queued hashing whose deadline cannot be met, and creates nothing for it', async () => {
      const tight = await startUserService(database.url, 200, {
        concurrency: 1,
        maxQueued: 100,
        maxWaitMs: 60_000,
      });
      try {
        const addresses = Array.from({ length: 8 }, () => email());
        // Deadlines too short for eight hashes in a row: later ones must not be computed at all.
        const results = await Promise.allSettled(
          addresses.map((address) =>
            tight.client.createUser(
              { email: address, name: 'Late', password: PASSWORD, idempotencyKey: '' },
              { deadlineMs: 150 },
            ),
          ),
        );
        const refused = addresses.filter((_, i) => results[i]!.status === 'rejected');
        expect(refused.length).toBeGreaterThan(0);
        for (const result of results) {
          if (result.status === 'rejected') {
            expect(['RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED']).toContain(
              status[(result.reason as ServiceError).code],
            );
          }
        }
        // Whatever answered "failed" did not happen: none of those accounts exists, now or later.
        // Read from the database itself: asking the service (VerifyCredentials) costs a hash, which
        // a busy CI machine can shed with UNAVAILABLE.
        await new Promise((resolve) => setTimeout(resolve, 500));
        const db = new Client({ connectionString: database.url });
        await db.connect();
        try {
          const found = await db.query('SELECT email FROM users WHERE email = ANY($1::text[])', [
            refused,
          ]);
          expect(found.rows).toEqual([]);
        } finally {
          await db.end();
        }
      } finally {
        await tight.stop();
      }
    });
  });

  describe('GetUser and BatchGetUsers', () => {
    it('gets a user by id', async () => {
      const { user } = await createUser({
        email: email(),
        name: 'Grace',
        password: PASSWORD,
      });
      const { user: found } = await service.client.getUser({ id: user!.id });
      expect(found).toEqual(user);
    });

    it('answers NOT_FOUND for an unknown id', async () => {
      const error = await failure(service.client.getUser({ id: UNKNOWN_ID }));
      expect(error.code).toBe(status.NOT_FOUND);
    });

    it.each(['not-a-uuid', "1' OR '1'='1", ''])(
      'answers INVALID_ARGUMENT naming the field for the malformed id %j',
      async (id) => {
        const error = await failure(service.client.getUser({ id }));
        expect(error.code).toBe(status.INVALID_ARGUMENT);
        expect(fieldViolationsOf(error)).toEqual([
          { field: 'id', description: 'must be a UUID', reason: 'INVALID_FORMAT' },
        ]);
      },
    );

    it('batch-gets existing users in the order asked, skipping unknown and malformed ids', async () => {
      const a = (await createUser({ email: email(), name: 'A', password: PASSWORD })).user!;
      const b = (await createUser({ email: email(), name: 'B', password: PASSWORD })).user!;
      const { users } = await service.client.batchGetUsers({
        ids: [b.id, UNKNOWN_ID, 'junk', a.id, b.id],
      });
      expect(users.map((user) => user.id)).toEqual([b.id, a.id]);
    });

    it('refuses more than 100 ids', async () => {
      const error = await failure(
        service.client.batchGetUsers({ ids: Array.from({ length: 101 }, () => UNKNOWN_ID) }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error)[0]?.field).toBe('ids');
    });
  });

  describe('ListUsers', () => {
    it('walks every user once with opaque cursors, 20 by default and at most 100', async () => {
      for (let i = 0; i < 25; i++)
        await createUser({ email: email(), name: `L${i}`, password: PASSWORD });
      const first = await service.client.listUsers({ pageSize: 0, pageToken: '' });
      expect(first.users).toHaveLength(20);
      expect(first.nextPageToken).not.toBe('');
      expect(first.nextPageToken).not.toMatch(/^\d+$/); // not an offset

      const ids: string[] = [];
      let pageToken = '';
      do {
        const page = await service.client.listUsers({ pageSize: 7, pageToken });
        ids.push(...page.users.map((user) => user.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(new Set(ids).size).toBe(ids.length);
      const all = await service.client.listUsers({ pageSize: 1000, pageToken: '' });
      expect(all.users.length).toBeLessThanOrEqual(100);
      expect(ids.slice(0, all.users.length)).toEqual(all.users.map((user) => user.id));
    });

    it('rejects a forged page token and a negative page size', async () => {
      expect(
        (await failure(service.client.listUsers({ pageSize: 5, pageToken: 'forged' }))).code,
      ).toBe(status.INVALID_ARGUMENT);
      expect((await failure(service.client.listUsers({ pageSize: -1, pageToken: '' }))).code).toBe(
        status.INVALID_ARGUMENT,
      );
    });
  });

  describe('UpdateUser and DeleteUser', () => {
    it('renames a user', async () => {
      const { user } = await createUser({
        email: email(),
        name: 'Old',
        password: PASSWORD,
      });
      const { user: updated } = await service.client.updateUser({ id: user!.id, name: '  New  ' });
      expect(updated!.name).toBe('New');
      expect((await service.client.getUser({ id: user!.id })).user!.name).toBe('New');
    });

    it('rejects an invalid name and an unknown user', async () => {
      const { user } = await createUser({
        email: email(),
        name: 'Old',
        password: PASSWORD,
      });
      expect((await failure(service.client.updateUser({ id: user!.id, name: '' }))).code).toBe(
        status.INVALID_ARGUMENT,
      );
      expect((await failure(service.client.updateUser({ id: UNKNOWN_ID, name: 'X' }))).code).toBe(
        status.NOT_FOUND,
      );
    });

    it('answers INVALID_ARGUMENT naming the field for a malformed id in UpdateUser and DeleteUser', async () => {
      for (const error of [
        await failure(service.client.updateUser({ id: 'not-a-uuid', name: 'X' })),
        await failure(service.client.deleteUser({ id: 'not-a-uuid' })),
      ]) {
        expect(error.code).toBe(status.INVALID_ARGUMENT);
        expect(fieldViolationsOf(error)).toEqual([
          { field: 'id', description: 'must be a UUID', reason: 'INVALID_FORMAT' },
        ]);
      }
    });

    it('deletes a user once', async () => {
      const { user } = await createUser({
        email: email(),
        name: 'Gone',
        password: PASSWORD,
      });
      await service.client.deleteUser({ id: user!.id });
      expect((await failure(service.client.getUser({ id: user!.id }))).code).toBe(status.NOT_FOUND);
      expect((await failure(service.client.deleteUser({ id: user!.id }))).code).toBe(
        status.NOT_FOUND,
      );
    });
  });

  describe('VerifyCredentials', () => {
    it('returns the user for the right password, whatever the email case', async () => {
      const address = email();
      const { user } = await createUser({
        email: address,
        name: 'Vera',
        password: PASSWORD,
      });
      const { user: verified } = await service.client.verifyCredentials({
        email: address.toUpperCase(),
        password: PASSWORD,
      });
      expect(verified!.id).toBe(user!.id);
    });

    it('matches the decomposed spelling of the email the user registered composed', async () => {
      const address = `ren\u00e9e${++counter}@example.com`;
      const { user } = await createUser({
        email: address,
        name: 'R',
        password: PASSWORD,
      });
      const { user: verified } = await service.client.verifyCredentials({
        email: address.normalize('NFD'),
        password: PASSWORD,
      });
      expect(verified!.id).toBe(user!.id);
    });

    it('answers INVALID_ARGUMENT, not INTERNAL, for NUL in the email', async () => {
      const error = await failure(
        service.client.verifyCredentials({ email: 'a\u0000@example.com', password: PASSWORD }),
      );
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(fieldViolationsOf(error).map((v) => v.field)).toEqual(['email']);
    });

    it('answers UNAUTHENTICATED with the same message, in about the same time, for a wrong password and an unknown email', async () => {
      const address = email();
      await createUser({ email: address, name: 'Vera', password: PASSWORD });
      const timed = async (call: Promise<unknown>) => {
        const started = process.hrtime.bigint();
        const error = await failure(call);
        return { error, ms: Number(process.hrtime.bigint() - started) / 1e6 };
      };
      // Warm both paths once (the dummy hash is computed on first use).
      await failure(
        service.client.verifyCredentials({ email: 'nobody@example.com', password: PASSWORD }),
      );
      const wrong: number[] = [];
      const unknown: number[] = [];
      for (let i = 0; i < 5; i++) {
        const a = await timed(
          service.client.verifyCredentials({ email: address, password: 'wrong password!!' }),
        );
        const b = await timed(
          service.client.verifyCredentials({ email: `nobody${i}@example.com`, password: PASSWORD }),
        );
        expect(a.error.code).toBe(status.UNAUTHENTICATED);
        expect(b.error.code).toBe(status.UNAUTHENTICATED);
        expect(a.error.details).toBe(b.error.details);
        wrong.push(a.ms);
        unknown.push(b.ms);
      }
      const median = (values: number[]) => [...values].sort((x, y) => x - y)[2]!;
      // Both run one scrypt verification; without it the unknown email would answer ~50x faster.
      expect(median(unknown) / median(wrong)).toBeGreaterThan(0.5);
      expect(median(unknown) / median(wrong)).toBeLessThan(2);
    });
  });
});

describe('health follows the database', () => {
  it('reports NOT_SERVING while PostgreSQL is unreachable and SERVING when it returns', async () => {
    const database = await createTestDatabase();
    const proxy = await startTcpProxy(database.url);
    const service = await startUserService(proxy.url, 100);
    try {
      expect(await checkHealth(service.address, 'user.v1.UserService')).toBe('SERVING');
      proxy.block();
      expect(
        await eventually(() => checkHealth(service.address, 'user.v1.UserService'), 'NOT_SERVING'),
      ).toBe('NOT_SERVING');
      const error = await failure(
        service.client.getUser({ id: UNKNOWN_ID }, { deadlineMs: 5_000 }),
      );
      // A database outage is transient and not the caller's fault: UNAVAILABLE (retryable), no internals.
      expect(error.code).toBe(status.UNAVAILABLE);
      expect(error.details).toBe('the database is unavailable');
      proxy.unblock();
      expect(
        await eventually(() => checkHealth(service.address, 'user.v1.UserService'), 'SERVING'),
      ).toBe('SERVING');
      await expect(service.client.getUser({ id: UNKNOWN_ID })).rejects.toMatchObject({
        code: status.NOT_FOUND,
      });
    } finally {
      await service.stop();
      await proxy.close();
      await database.drop();
    }
  });
});
