import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserRegistered } from '@repo/contracts/user/v1/events';
import { eventJson, payloadJson, settingsFromEnv } from '../src/cli';
import { newEnvelope } from '../src/envelope';
import { createNatsTransport } from '../src/nats';
import { createPostgresTransport } from '../src/postgres';
import { EventTypes, Subjects, subjectOf } from '../src/subjects';
import { NATS_URL, createDatabase, testEvent, unique, waitFor } from './helpers';

/** The built command, as `pnpm events:*` runs it (the test task builds the package first). */
const CLI = join(__dirname, '..', 'dist', 'cli.js');

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const lines = (into: string[]) => {
    let rest = '';
    return (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop()!;
      into.push(...parts);
    };
  };
  child.stdout.on('data', lines(stdout));
  child.stderr.on('data', lines(stderr));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  return { child, stdout, stderr, exited };
}

/**
 * Runs of the command line with `env`, in a describe block: `start` leaves it running, `complete`
 * waits for its exit code; whatever still runs after a test is killed.
 */
function commandLine(env: () => Record<string, string>) {
  const runs: Run[] = [];
  afterEach(async () => {
    for (const { child, exited } of runs.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  });
  const start = (args: string[]) => {
    const started = run(args, env());
    runs.push(started);
    return started;
  };
  const complete = async (args: string[]) => {
    const done = start(args);
    return { ...done, code: await done.exited };
  };
  return { start, complete };
}

const subscribed = (tail: Run) =>
  waitFor('the tail to subscribe', () => tail.stderr.some((l) => l.startsWith('tailing')), 60_000);

const registered = (email: string) =>
  newEnvelope({
    type: EventTypes.UserRegistered,
    aggregateId: unique('user'),
    source: 'user',
    payload: UserRegistered.encode({ userId: 'u-1', email, name: 'Ada' }).finish(),
  });

describe('the events command line (pnpm events:*), on the PostgreSQL transport', () => {
  let drop: () => Promise<void>;
  let env: Record<string, string>;
  let transport: Awaited<ReturnType<typeof createPostgresTransport>>;

  beforeAll(async () => {
    const broker = await createDatabase();
    drop = broker.drop;
    env = { EVENTS_TRANSPORT: 'postgres', EVENTS_DATABASE_URL: broker.url };
    transport = await createPostgresTransport({ url: broker.url, pollMs: 100 });
  });
  afterAll(async () => {
    await transport?.close();
    await drop?.();
  });
  const { start, complete } = commandLine(() => env);
  const tailConsumers = async () =>
    (
      await transport.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM events_consumers WHERE name LIKE 'tail-%'`,
      )
    ).rows[0]!.n;

  it('tail prints each event as it is published, its payload decoded, and Ctrl-C removes its consumer', async () => {
    const tail = start(['tail']);
    await subscribed(tail);
    expect(await tailConsumers()).toBe(1);

    const event = registered('ada@example.com');
    await transport.publish(event);
    await waitFor('the line of the event', () => tail.stdout.length > 0, 30_000);
    expect(tail.stdout[0]).toBe(
      `${event.occurredAt!.toISOString()} user.v1.UserRegistered aggregate=${event.aggregateId} id=${event.id} source=user {"userId":"u-1","email":"ada@example.com","name":"Ada"}`,
    );

    tail.child.kill('SIGINT');
    expect(await tail.exited).toBe(0);
    expect(await tailConsumers()).toBe(0);
  });

  it('tail --json <type> prints that type only, one JSON object a line', async () => {
    const tail = start(['tail', '--json', EventTypes.UserRegistered]);
    await subscribed(tail);
    const other = testEvent(EventTypes.UserDeleted, 'x');
    const event = registered('grace@example.com');
    await transport.publish(other);
    await transport.publish(event);
    await waitFor('the line of the event', () => tail.stdout.length > 0, 30_000);
    expect(tail.stdout.map((line) => JSON.parse(line) as unknown)).toEqual([eventJson(event)]);
    expect(JSON.parse(tail.stdout[0]!)).toMatchObject({ payload: { email: 'grace@example.com' } });
    tail.child.kill('SIGTERM');
    expect(await tail.exited).toBe(0);
  });

  it('lists dead letters (every consumer’s, or one’s) and replays one to its consumer', async () => {
    const consumer = unique('cli-consumer');
    // A new durable consumer also gets the earlier tests' events: those it handles.
    const event = registered('poison@example.com');
    let failing = true;
    const handled: string[] = [];
    const subscription = await transport.subscribe(
      consumer,
      [Subjects.UserRegistered],
      async ({ envelope }) => {
        if (failing && envelope.id === event.id) throw new Error('the handler is broken');
        handled.push(envelope.id);
      },
      { maxAttempts: 1 },
    );
    try {
      await transport.publish(event);
      await waitFor(
        'the dead letter',
        async () => (await transport.deadLetters(consumer)).length === 1,
        30_000,
      );

      const all = await complete(['dead-letters']);
      expect(all.code).toBe(0);
      const line = all.stdout.find((l) => l.includes(consumer));
      expect(line).toContain(`${consumer} attempts=1 error="the handler is broken"`);
      expect(line).toContain(`id=${event.id}`);
      expect(line).toContain('"email":"poison@example.com"');
      expect(all.stderr.at(-1)).toMatch(/dead letter\(s\); replay one with: pnpm events:replay/);

      const one = await complete(['dead-letters', '--json', consumer]);
      expect(one.stdout.map((l) => JSON.parse(l) as { consumer: string; event: unknown })).toEqual([
        expect.objectContaining({ consumer, attempts: 1, event: eventJson(event) }),
      ]);

      const missing = await complete(['replay', consumer, 'no-such-event']);
      expect(missing.code).toBe(1);
      expect(missing.stderr.join('\n')).toContain('has no dead letter with event id no-such-event');

      failing = false;
      const replayed = await complete(['replay', consumer, event.id]);
      expect([replayed.code, replayed.stdout]).toEqual([
        0,
        [`replayed ${event.id} to ${consumer}`],
      ]);
      await waitFor('the replayed event handled', () => handled.includes(event.id), 30_000);
      const none = await complete(['dead-letters', consumer]);
      expect([none.code, none.stdout, none.stderr.at(-1)]).toEqual([0, [], 'no dead letters']);
    } finally {
      await subscription.stop();
    }
  });

  it('refuses what it does not know, saying how it is used', async () => {
    for (const args of [
      ['tail', '--follow'],
      ['tail', 'UserRegistered'],
      ['replay', 'only-a-consumer'],
      ['dead-letters', 'one', 'two'],
      ['nonsense'],
      [],
    ]) {
      const result = await complete(args);
      expect([args, result.code]).toEqual([args, 2]);
      expect(result.stderr.join('\n')).toContain('usage:');
    }
  });
});

describe('the events command line, on NATS JetStream (a namespace of its own)', () => {
  const namespace = unique('cli').toUpperCase();
  const stream = `EVENTS_${namespace}`;
  const prefix = `events_${namespace}`;
  let transport: Awaited<ReturnType<typeof createNatsTransport>>;
  beforeAll(async () => {
    transport = await createNatsTransport({ servers: NATS_URL, name: 'cli-test', stream, prefix });
  });
  afterAll(async () => {
    for (const name of [stream, `${stream}_DEAD`])
      await transport?.jsm.streams.delete(name).catch(() => undefined);
    await transport?.close();
  });
  const { start, complete } = commandLine(() => ({
    EVENTS_TRANSPORT: 'nats',
    NATS_URL,
    EVENTS_NAMESPACE: namespace,
  }));

  it('tails the events of the namespace, lists every consumer’s dead letters and replays one', async () => {
    const tail = start(['tail']);
    await subscribed(tail);
    const event = registered('nats@example.com');
    await transport.publish(event);
    await waitFor('the line of the event', () => tail.stdout.length > 0, 30_000);
    expect(tail.stdout).toEqual([expect.stringContaining(`id=${event.id}`)]);
    expect(tail.stdout[0]).toContain('"email":"nats@example.com"');
    tail.child.kill('SIGINT');
    expect(await tail.exited).toBe(0);

    const consumer = unique('cli-consumer');
    const handled: string[] = [];
    let failing = true;
    const subscription = await transport.subscribe(
      consumer,
      [subjectOf(EventTypes.UserRegistered, prefix)],
      async ({ envelope }) => {
        if (failing) throw new Error('the handler is broken');
        handled.push(envelope.id);
      },
      { maxAttempts: 1 },
    );
    try {
      await waitFor(
        'the dead letter',
        async () => (await transport.deadLetters(consumer)).length === 1,
        30_000,
      );
      const all = await complete(['dead-letters']);
      expect(all.code).toBe(0);
      expect(all.stdout).toEqual([expect.stringContaining(`${consumer} attempts=1`)]);
      expect(all.stdout[0]).toContain(`id=${event.id}`);

      failing = false;
      expect((await complete(['replay', consumer, event.id])).code).toBe(0);
      await waitFor('the replayed event handled', () => handled.includes(event.id), 30_000);
      const none = await complete(['dead-letters']);
      expect([none.code, none.stdout, none.stderr.at(-1)]).toEqual([0, [], 'no dead letters']);
    } finally {
      await subscription.stop();
    }
  });
});

describe('the events command line: settings and payloads', () => {
  it('finds the `pnpm dev` PostgreSQL through its data directory when no broker is named', () => {
    const root = mkdtempSync(join(tmpdir(), 'events-cli-'));
    try {
      expect(() => settingsFromEnv({}, root)).toThrow(/no PostgreSQL of `pnpm dev` is running/);
      mkdirSync(join(root, 'dev-data', 'postgres'), { recursive: true });
      writeFileSync(
        join(root, 'dev-data', 'postgres', 'postmaster.pid'),
        `${process.pid}\n${root}\n1764417600\n54329\n/tmp\n127.0.0.1\n`,
      );
      expect(settingsFromEnv({ DATA_DIR: 'dev-data' }, root)).toEqual({
        EVENTS_TRANSPORT: 'postgres',
        EVENTS_DATABASE_URL: 'postgresql://postgres:postgres@127.0.0.1:54329/events',
        NATS_URL: 'nats://127.0.0.1:4222',
        where: 'postgres 127.0.0.1:54329/events',
      });
      expect(
        settingsFromEnv({ EVENTS_TRANSPORT: 'nats', NATS_URL: 'nats://n:4222' }, root),
      ).toEqual({ EVENTS_TRANSPORT: 'nats', NATS_URL: 'nats://n:4222', where: 'nats://n:4222' });
      expect(
        settingsFromEnv({ EVENTS_TRANSPORT: 'nats', EVENTS_NAMESPACE: 'e2e_1' }, root),
      ).toEqual({
        EVENTS_TRANSPORT: 'nats',
        NATS_URL: 'nats://127.0.0.1:4222',
        EVENTS_NAMESPACE: 'e2e_1',
        where: 'nats://127.0.0.1:4222 (namespace e2e_1)',
      });
      expect(() => settingsFromEnv({ EVENTS_TRANSPORT: 'kafka' }, root)).toThrow(
        /postgres or nats/,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('shows a payload it cannot decode as base64, saying why', () => {
    expect(payloadJson(testEvent('test.v1.Unknown', 'a', 'hi'))).toEqual({
      undecoded: 'no decoder for test.v1.Unknown',
      base64: Buffer.from('hi').toString('base64'),
    });
    const garbage = { ...registered('x@example.com'), payload: Buffer.from([0xff, 0xff, 0xff]) };
    expect(payloadJson(garbage)).toMatchObject({ base64: '////' });
  });
});
