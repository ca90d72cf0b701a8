import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { status, type ServiceError } from '@grpc/grpc-js';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { writeAddressFile } from '../src/discovery';
import { DomainError } from '../src/errors';
import { createServiceClient } from '../src/grpc-client';
import { createHealthClient } from '../src/health-client';
import type { GrpcServer } from '../src/grpc-server';
import { DEFAULT_RETRY_POLICY, RETRY_BUDGET, RetryBudget, backoffMs } from '../src/retry';
import { rejectionOf } from '../src/testing';
import { fakeUserServer } from './fake-user-service';

type Behaviour = 'ok' | 'unavailable' | 'hang';

/** A real UserService server on an ephemeral port that counts the calls it gets. */
interface Replica {
  address: string;
  server: GrpcServer;
  calls: { getUser: number; createUser: number };
  /** The ids of the GetUser requests it received, in order. */
  getUserIds: string[];
  behaviour: Behaviour;
}

const user = { id: '00000000-0000-4000-8000-000000000001', email: 'a@example.com', name: 'A' };

async function startReplica(): Promise<Replica> {
  const replica = {
    calls: { getUser: 0, createUser: 0 },
    getUserIds: [],
    behaviour: 'ok',
  } as unknown as Replica;
  const answer = (signal: AbortSignal) => {
    if (replica.behaviour === 'unavailable') {
      // What a replica whose database is unreachable answers, at once.
      return Promise.reject(new DomainError('UNAVAILABLE', 'the database is unavailable'));
    }
    if (replica.behaviour === 'hang') {
      // Never answers: the caller's deadline (or cancellation) is the only way out.
      return new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error('abandoned')), { once: true }),
      );
    }
    return Promise.resolve({ user });
  };
  replica.server = fakeUserServer({
    getUser: (request, context) => {
      replica.calls.getUser++;
      replica.getUserIds.push(request.id);
      return answer(context.signal);
    },
    createUser: (_request, context) => {
      replica.calls.createUser++;
      return answer(context.signal);
    },
  });
  replica.server.setServing(true);
  replica.address = `127.0.0.1:${await replica.server.listen(0, '127.0.0.1')}`;
  return replica;
}

const codeOf = (error: unknown) => (error as ServiceError).code;

/** Runs `assertion` until it passes; after `timeoutMs`, fails with its last error. */
async function passesWithin(timeoutMs: number, assertion: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await assertion();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('client-side balancing, discovery and retries over real replicas', () => {
  let directory: string;
  let file: string;
  let replicas: Replica[];
  const clients: { close(): void }[] = [];

  const client = (options: Parameters<typeof createServiceClient>[2] = {}) => {
    const created = createServiceClient(UserServiceClient, `file://${file}`, options);
    clients.push(created);
    return created;
  };
  const register = (...listed: Replica[]) =>
    writeAddressFile(
      file,
      listed.map((replica) => replica.address),
    );
  /** Calls until every listed replica has answered one: round_robin uses only connected ones. */
  const connected = async (users: ReturnType<typeof client>, ...listed: Replica[]) => {
    const before = listed.map((replica) => replica.calls.getUser);
    await passesWithin(5_000, async () => {
      await users.getUser({ id: user.id });
      listed.forEach((replica, i) => expect(replica.calls.getUser).toBeGreaterThan(before[i]!));
    });
  };

  beforeEach(async () => {
    directory = mkdtempSync(join(tmpdir(), 'discovery-'));
    file = join(directory, 'user');
    replicas = [await startReplica(), await startReplica(), await startReplica()];
  });

  afterEach(async () => {
    for (const created of clients.splice(0)) created.close();
    await Promise.all(replicas.map((replica) => replica.server.shutdown(100)));
    rmSync(directory, { recursive: true, force: true });
  });

  it('spreads calls over every listed replica (round_robin), and a replica listed later gets calls at once', async () => {
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    register(a, b);
    const users = client();
    for (let i = 0; i < 1_000; i++) await users.getUser({ id: user.id });
    for (const replica of [a, b]) {
      expect(replica.calls.getUser).toBeGreaterThanOrEqual(300);
      expect(replica.calls.getUser).toBeLessThanOrEqual(700);
    }
    expect(c.calls.getUser).toBe(0);

    register(a, b, c);
    // The resolver follows the file: the next calls reach the new replica with no restart.
    await passesWithin(5_000, async () => {
      await users.getUser({ id: user.id });
      expect(c.calls.getUser).toBeGreaterThan(0);
    });
    // Unlisted replicas get nothing more.
    register(c);
    await passesWithin(5_000, async () => {
      const before = a.calls.getUser + b.calls.getUser;
      for (let i = 0; i < 20; i++) await users.getUser({ id: user.id });
      expect(a.calls.getUser + b.calls.getUser).toBe(before);
    });
  });

  it('fails at once with UNAVAILABLE when no replica is listed, instead of waiting out the deadline', async () => {
    register();
    const users = client({ deadlineMs: 5_000 });
    const started = performance.now();
    const error = await rejectionOf(users.getUser({ id: user.id }));
    expect(codeOf(error)).toBe(status.UNAVAILABLE);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('retries a read that a failing replica refused on another, and never retries a write', async () => {
    const [a, b] = replicas as [Replica, Replica];
    register(a, b);
    const users = client();
    await connected(users, a, b);
    a.behaviour = 'unavailable';
    const [failedBefore, servedBefore] = [a.calls.getUser, b.calls.getUser];
    for (let i = 0; i < 50; i++) await users.getUser({ id: user.id });
    expect(a.calls.getUser).toBeGreaterThan(failedBefore);
    expect(b.calls.getUser - servedBefore).toBe(50);

    // CreateUser is not marked idempotent in the proto: whoever gets it answers for it.
    const before = a.calls.createUser + b.calls.createUser;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, () => users.createUser({} as never)),
    );
    expect(a.calls.createUser + b.calls.createUser - before).toBe(20);
    expect(outcomes.some((outcome) => outcome.status === 'rejected')).toBe(a.calls.createUser > 0);
  });

  it('ejects a replica that keeps failing (outlier detection), so even writes stop failing', async () => {
    const [a, b] = replicas as [Replica, Replica];
    register(a, b);
    // As in the gateway: a health client to the same replicas, connected first.
    const health = createHealthClient(`file://${file}`);
    clients.push(health);
    for (let i = 0; i < 4; i++) await health.check();
    const users = client();
    await connected(users, a, b);
    a.behaviour = 'unavailable';
    // Each one-second sweep ejects a replica that failed >= 85% of >= 10 calls in that second.
    await passesWithin(10_000, async () => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 40 }, () => users.createUser({} as never)),
      );
      expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toHaveLength(0);
    });
    const failedBefore = a.calls.createUser;
    for (let i = 0; i < 100; i++) await users.createUser({} as never);
    expect(a.calls.createUser).toBe(failedBefore);
  });

  it('abandons an attempt on a hung replica after attemptTimeoutMs and retries on another', async () => {
    const [a, b] = replicas as [Replica, Replica];
    register(a, b);
    const users = client({ deadlineMs: 5_000 });
    await connected(users, a, b);
    a.behaviour = 'hang';
    const [hungBefore, servedBefore] = [a.calls.getUser, b.calls.getUser];
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      await users.getUser({ id: user.id });
      latencies.push(performance.now() - started);
    }
    expect(a.calls.getUser).toBeGreaterThan(hungBefore);
    expect(b.calls.getUser - servedBefore).toBe(20);
    // A hung replica costs one attempt timeout (plus a backoff of at most 10 ms), never the
    // 5 s deadline. (Bounded loosely: a busy machine adds its own delays.)
    expect(Math.max(...latencies)).toBeLessThan(5_000 / 2);
    expect(latencies.filter((ms) => ms >= DEFAULT_RETRY_POLICY.attemptTimeoutMs).length).toBe(
      a.calls.getUser - hungBefore,
    );
  });

  /**
   * Calls GetUser from eight concurrent callers for `ms`, each call with an id of its own, so the
   * replicas' request logs tell whether one call reached a replica twice (what a busy machine's
   * timings cannot tell: one attempt timeout can then take as long as two). Concurrent, because
   * round_robin alone would then send a retry back to a hung replica about half the time: the
   * other callers' picks come in between.
   */
  const callConcurrently = async (users: ReturnType<typeof client>, ms: number) => {
    const started = performance.now();
    let calls = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (performance.now() - started < ms) {
          await users.getUser({
            id: `00000000-0000-4000-8000-${String(++calls).padStart(12, '0')}`,
          });
        }
      }),
    );
  };
  /**
   * Attempts on a hung replica are abandoned after this: longer than the default, so that on a
   * busy machine (CI runs several test processes on two cores) a healthy replica's answer does not
   * outlast an attempt too and send the call's last attempt back to a hung one.
   */
  const retry = { attemptTimeoutMs: 1_000 };

  it('sends a retry to another replica than the one that hung: no call pays two attempt timeouts', async () => {
    const [a, b] = replicas as [Replica, Replica];
    register(a, b);
    const users = client({ deadlineMs: 10_000, retry });
    await connected(users, a, b);
    a.behaviour = 'hang';
    const seenBefore = a.getUserIds.length;
    await callConcurrently(users, 2_500);
    const hungIds = a.getUserIds.slice(seenBefore);
    expect(hungIds.length).toBeGreaterThan(0);
    expect(new Set(hungIds).size).toBe(hungIds.length);
  });

  it('sends a third attempt to neither replica the first two failed on', async () => {
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    register(a, b, c);
    const users = client({ deadlineMs: 10_000, retry });
    await connected(users, a, b, c);
    a.behaviour = 'hang';
    b.behaviour = 'hang';
    const seenBefore = [a.getUserIds.length, b.getUserIds.length];
    await callConcurrently(users, 4_000);
    const [hungOnA, hungOnB] = [a, b].map((replica, i) => replica.getUserIds.slice(seenBefore[i]));
    // Some calls failed on both, in either order, and went on to c (every call above succeeded).
    expect(hungOnA!.filter((id) => hungOnB!.includes(id)).length).toBeGreaterThan(0);
    for (const ids of [hungOnA!, hungOnB!]) expect(new Set(ids).size).toBe(ids.length);
  });

  it('never retries past the deadline: with every replica hung, a read fails with DEADLINE_EXCEEDED on time', async () => {
    for (const replica of replicas) replica.behaviour = 'hang';
    register(...replicas);
    const users = client({ deadlineMs: 700 });
    const started = performance.now();
    const error = await rejectionOf(users.getUser({ id: user.id }));
    const elapsed = performance.now() - started;
    expect(codeOf(error)).toBe(status.DEADLINE_EXCEEDED);
    expect(elapsed).toBeGreaterThanOrEqual(650);
    // Three attempts in all (300 + 300 + the rest), however many replicas there are; on a busy
    // machine the second can end too close to the deadline for a third to be worth starting.
    const attempts = replicas.reduce((sum, replica) => sum + replica.calls.getUser, 0);
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(DEFAULT_RETRY_POLICY.maxAttempts);
  });

  it('cannot amplify an outage: with every replica failing, retries stay within the budget', async () => {
    for (const replica of replicas) replica.behaviour = 'unavailable';
    register(...replicas);
    const retries: string[] = [];
    const users = client({ onRetry: ({ code }) => retries.push(code) });
    const calls = 1_000;
    const started = performance.now();
    for (let i = 0; i < calls; i++) await rejectionOf(users.getUser({ id: user.id }));
    const seconds = (performance.now() - started) / 1000;
    const attempts = replicas.reduce((sum, replica) => sum + replica.calls.getUser, 0);
    // One retry per five calls, plus the small reserve of each window the calls spread over (a
    // busy machine makes them take longer): not two more attempts for every call.
    const windows = Math.ceil(seconds / RETRY_BUDGET.windowSeconds) + 1;
    const reserve = RETRY_BUDGET.minPerSecond * RETRY_BUDGET.windowSeconds * windows;
    expect(retries.length).toBeLessThanOrEqual(reserve + calls * RETRY_BUDGET.ratio + 1);
    expect(retries.length).toBeLessThan(calls);
    expect(retries.length).toBeGreaterThanOrEqual(calls * RETRY_BUDGET.ratio);
    // Every attempt the client made, at most: on a busy machine one may fail in the client (its
    // connection being made again) without reaching a replica.
    expect(attempts).toBeLessThanOrEqual(calls + retries.length);
    expect(attempts).toBeGreaterThan(calls + retries.length - 10);
    expect(new Set(retries)).toEqual(new Set(['UNAVAILABLE']));
  });

  it('can be told not to retry at all', async () => {
    const [a] = replicas as [Replica];
    a.behaviour = 'unavailable';
    register(a);
    const users = client({ retry: false });
    expect(codeOf(await rejectionOf(users.getUser({ id: user.id })))).toBe(status.UNAVAILABLE);
    expect(a.calls.getUser).toBe(1);
  });
});

describe('retry budget and backoff', () => {
  it('allows retries up to `ratio` of the calls of the last window, plus a few per second', () => {
    let now = 1_000_000;
    const budget = new RetryBudget(0.2, 1, 10, () => now);
    let spent = 0;
    while (budget.tryRetry()) spent++;
    expect(spent).toBe(10); // no calls yet: the reserve, 1 a second over 10 s
    for (let i = 0; i < 100; i++) budget.deposit();
    while (budget.tryRetry()) spent++;
    expect(spent).toBe(30); // + 20% of 100 calls
    now += 10_000; // the window has moved past all of them
    expect(budget.tryRetry()).toBe(true);
  });

  it('backs off with full jitter, capped', () => {
    const policy = { ...DEFAULT_RETRY_POLICY, initialBackoffMs: 10, maxBackoffMs: 100 };
    expect(backoffMs(policy, 1, () => 1)).toBe(10);
    expect(backoffMs(policy, 3, () => 1)).toBe(40);
    expect(backoffMs(policy, 10, () => 1)).toBe(100);
    expect(backoffMs(policy, 10, () => 0)).toBe(0);
  });
});
