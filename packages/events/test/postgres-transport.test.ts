import { Pool } from 'pg';
import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import { createPostgresTransport } from '../src/postgres';
import { transportContract } from './transport-contract';
import { createDatabase, sleep, testEvent, unique, waitFor } from './helpers';
import { subjectOf } from '../src/subjects';

describe('PostgreSQL transport (broker database of its own)', () => {
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await drop?.();
  });

  transportContract(async () => {
    const database = await createDatabase();
    drop = database.drop;
    const target = new URL(database.url);
    return {
      prefix: 'events',
      target: { host: target.hostname, port: Number(target.port || 5432) },
      open: ({ via, ...options } = {}) => {
        const url = new URL(database.url);
        if (via) url.host = via;
        return createPostgresTransport({ url: url.toString(), pollMs: 100, ...options });
      },
    };
  });
});

describe('PostgreSQL transport: retention', () => {
  it('deletes events past their age, keeping dead letters (and their events) until replayed', async () => {
    const database = await createDatabase();
    const transport = await createPostgresTransport({ url: database.url, pollMs: 50 });
    try {
      const type = `test.v1.${unique('Kept')}`;
      const consumer = unique('c');
      const acked: string[] = [];
      const subscription = await transport.subscribe(
        consumer,
        [subjectOf(type)],
        async ({ envelope }) => {
          if (Buffer.from(envelope.payload).toString() === 'poison') throw new Error('no');
          acked.push(envelope.id);
        },
        { maxAttempts: 1 },
      );
      const poison = testEvent(type, 'a', 'poison');
      const fine = testEvent(type, 'a', 'fine');
      await transport.publish(poison);
      await transport.publish(fine);
      await waitFor('the second event', () => acked.includes(fine.id));
      await subscription.stop();
      expect(await transport.pruneMessages(0)).toBe(1);
      expect((await transport.deadLetters(consumer)).map((d) => d.envelope.id)).toEqual([
        poison.id,
      ]);
      // Pruned, its id can be published again (the de-duplication window is the retention).
      expect(await transport.publish(fine)).toEqual({ duplicate: false });
    } finally {
      await transport.close();
      await database.drop();
    }
  });
});

describe('PostgreSQL transport: live consumers', () => {
  it('keeps a running live consumer alive by its heartbeat and deletes its rows on stop', async () => {
    const database = await createDatabase();
    const transport = await createPostgresTransport({
      url: database.url,
      pollMs: 50,
      liveInactiveMs: 1500,
    });
    try {
      const type = `test.v1.${unique('Live')}`;
      const consumer = unique('live');
      const acked: string[] = [];
      const subscription = await transport.subscribe(
        consumer,
        [subjectOf(type)],
        async ({ envelope }) => {
          acked.push(envelope.id);
        },
        { live: true },
      );
      const rows = async () => {
        const result = await transport.pool.query<{ consumers: number; deliveries: number }>(
          `SELECT (SELECT count(*)::int FROM events_consumers WHERE name = $1) AS consumers,
                  (SELECT count(*)::int FROM events_deliveries WHERE consumer = $1) AS deliveries`,
          [consumer],
        );
        return result.rows[0]!;
      };
      // Well past its expiry, reaped every 0.5 s: only the heartbeat keeps it.
      await sleep(4500);
      const event = testEvent(type, 'a');
      await transport.publish(event);
      await waitFor('the event', () => acked.includes(event.id));
      expect((await rows()).consumers).toBe(1);
      await subscription.stop();
      await transport.publish(testEvent(type, 'a'));
      expect(await rows()).toEqual({ consumers: 0, deliveries: 0 });
    } finally {
      await transport.close();
      await database.drop();
    }
  });
});

describe('PostgreSQL transport: live consumers coming and going', () => {
  it('never fails a publication while live consumers are deleted', async () => {
    const database = await createDatabase();
    const transport = await createPostgresTransport({ url: database.url, maxConnections: 10 });
    try {
      const type = `test.v1.${unique('Churn')}`;
      let publishing = true;
      const failures: unknown[] = [];
      const publishers = Array.from({ length: 4 }, async () => {
        while (publishing) {
          await transport.publish(testEvent(type, unique('a'))).catch((error) => {
            failures.push(error);
          });
        }
      });
      for (let i = 0; i < 40; i++) {
        const subscription = await transport.subscribe(
          unique('live'),
          [subjectOf(type)],
          async () => undefined,
          { live: true },
        );
        await subscription.stop();
      }
      publishing = false;
      await Promise.all(publishers);
      expect(failures).toEqual([]);
    } finally {
      await transport.close();
      await database.drop();
    }
  }, 60_000);
});

describe('PostgreSQL transport: the LISTEN connection after an outage', () => {
  it('listens again once the broker is back: events arrive on NOTIFY, not on the next poll', async () => {
    const database = await createDatabase();
    const target = new URL(database.url);
    const proxy = new TcpProxy(await freePort(), {
      host: target.hostname,
      port: Number(target.port || 5432),
    });
    await proxy.start();
    const throughProxy = new URL(database.url);
    throughProxy.host = proxy.address;
    throughProxy.searchParams.set('application_name', 'cut_off');
    // Polls once a minute: within this test's waits, only a NOTIFY delivers.
    const subscriber = await createPostgresTransport({
      url: throughProxy.toString(),
      pollMs: 60_000,
    });
    const publisher = await createPostgresTransport({ url: database.url, pollMs: 60_000 });
    const admin = new Pool({ connectionString: database.url, max: 1 });
    /** The subscriber's backends that LISTEN. */
    const listening = async () =>
      (
        await admin.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
           WHERE application_name = 'cut_off' AND query LIKE 'LISTEN%'`,
        )
      ).rows.map((row) => row.pid);
    try {
      const type = `test.v1.${unique('Relisten')}`;
      const acked: string[] = [];
      const subscription = await subscriber.subscribe(
        unique('c'),
        [subjectOf(type)],
        async ({ envelope }) => {
          acked.push(envelope.id);
        },
      );
      const before = testEvent(type, 'a', 'before');
      await publisher.publish(before);
      await waitFor('the event before the outage', () => acked.includes(before.id));

      const listenersBefore = await listening();
      expect(listenersBefore).toHaveLength(1);
      await proxy.stop(); // every connection through it dropped, new ones refused
      const during = testEvent(type, 'a', 'during');
      await publisher.publish(during); // its NOTIFY reaches no one
      await proxy.start();
      // Woken once it listens again, for what it missed.
      await waitFor(
        'the event published during the outage',
        () => acked.includes(during.id),
        20_000,
      );
      await waitFor('a LISTEN connection again', async () => {
        const now = await listening();
        return now.length === 1 && !listenersBefore.includes(now[0]!);
      });
      const after = testEvent(type, 'a', 'after');
      await publisher.publish(after);
      await waitFor('the event published after the outage', () => acked.includes(after.id), 20_000);
      await subscription.stop();
      expect(acked).toEqual([before.id, during.id, after.id]);
    } finally {
      await subscriber.close();
      await publisher.close();
      await admin.end();
      await proxy.stop();
      await database.drop();
    }
  }, 60_000);
});

describe('PostgreSQL transport: a start that fails', () => {
  it('leaves no timer behind when its LISTEN connection cannot be opened, however often retried', async () => {
    const database = await createDatabase();
    const admin = new Pool({ connectionString: database.url, max: 1 });
    const role = unique('one_connection');
    // A role allowed one connection: the pool's first (the tables) works, the LISTEN one is refused.
    // With a password: the embedded server (CI) asks for one over TCP, a trust setup ignores it.
    const password = unique('pw');
    await admin.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 1 PASSWORD '${password}'`);
    await admin.query(`ALTER SCHEMA public OWNER TO ${role}`);
    const url = new URL(database.url);
    url.username = role;
    url.password = password;
    // The intervals made while starting, less those cleared: what keeps running afterwards.
    const live = new Set<unknown>();
    const realSet = global.setInterval;
    const realClear = global.clearInterval;
    const setSpy = jest
      .spyOn(global, 'setInterval')
      .mockImplementation((...args: Parameters<typeof setInterval>) => {
        const timer = realSet(...args);
        live.add(timer);
        return timer;
      });
    const clearSpy = jest.spyOn(global, 'clearInterval').mockImplementation((timer) => {
      live.delete(timer);
      realClear(timer);
    });
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        await expect(
          createPostgresTransport({ url: url.toString(), createDatabase: false }),
        ).rejects.toThrow(/too many connections/);
      }
      expect(live.size).toBe(0);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
      for (const timer of live) realClear(timer as NodeJS.Timeout);
      await admin.end();
      await database.drop(); // with the tables the role owned, so that it can go too
      const server = new Pool({ connectionString: process.env.EVENTS_TEST_SERVER_URL, max: 1 });
      await server.query(`DROP ROLE IF EXISTS ${role}`);
      await server.end();
    }
  });
});
