import { Pool } from 'pg';
import { afterCommit, inTransaction } from '@repo/database/transaction';
import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import type { Envelope } from '../src/envelope';
import { handleOnce } from '../src/inbox';
import {
  appendToOutbox,
  inboxMigrationSql,
  outboxBacklog,
  outboxMigrationSql,
} from '../src/outbox';
import { createNatsTransport } from '../src/nats';
import { createPostgresTransport } from '../src/postgres';
import { Relay } from '../src/relay';
import { subjectOf } from '../src/subjects';
import type { Delivery, PublishResult, Transport } from '../src/transport';
import { NATS_URL, bodyOf, createDatabase, deferred, testEvent, unique, waitFor } from './helpers';

/** A transport that only publishes, through `publish`; the relay needs nothing else. */
function publishOnly(publish: (envelope: Envelope) => Promise<PublishResult>): Transport {
  const unused = () => Promise.reject(new Error('not used by the relay'));
  return {
    name: 'test',
    prefix: 'test',
    publish,
    subscribe: unused,
    pending: unused,
    deadLetters: unused,
    replayDeadLetter: unused,
    close: () => Promise.resolve(),
  };
}

interface OutboxRow {
  event_id: string;
  sent_at: Date | null;
  attempts: number;
  last_error: string | null;
}

describe('outbox, relay and inbox (real PostgreSQL)', () => {
  const drops: (() => Promise<void>)[] = [];
  const pools: Pool[] = [];
  const relays: Relay[] = [];
  let service: Pool;

  /** A database holding the outbox (a service's) or the inbox (a consumer's) migration. */
  async function database(sql: string): Promise<Pool> {
    const created = await createDatabase();
    drops.push(created.drop);
    const pool = new Pool({ connectionString: created.url, max: 6 });
    pools.push(pool);
    await pool.query(sql);
    return pool;
  }

  const relayFor = (
    transport: Transport,
    options: Partial<ConstructorParameters<typeof Relay>[0]> = {},
  ) => {
    const relay = new Relay({
      pool: service,
      transport,
      lockName: 'outbox-relay-test',
      pollMs: 60_000, // only NOTIFY (or wake) makes these relays look: proves the NOTIFY works
      standbyMs: 50,
      retainSentMs: 3600_000, // sent rows stay, marked, for these tests to look at
      backoff: { initialMs: 20, maxMs: 100 },
      ...options,
    });
    relays.push(relay);
    return relay;
  };

  const rows = async () =>
    (
      await service.query<OutboxRow>(
        'SELECT event_id, sent_at, attempts, last_error FROM outbox ORDER BY position',
      )
    ).rows;

  /** A change and its event, in one transaction (the aggregate locked first, as a service does). */
  const commitEvent = (type: string, aggregateId: string, body = '') =>
    inTransaction(service, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [aggregateId]);
      const event = testEvent(type, aggregateId, body);
      await appendToOutbox(tx, event);
      return event;
    });

  beforeEach(async () => {
    service = await database(outboxMigrationSql());
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop(1000)));
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    for (const drop of drops) await drop();
  });

  it('writes the event in the transaction of the change, and nothing when it rolls back', async () => {
    const type = 'test.v1.Thing';
    const kept = await commitEvent(type, 'a');
    await expect(
      inTransaction(service, async (tx) => {
        await appendToOutbox(tx, testEvent(type, 'a', 'rolled back'));
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    await inTransaction(service, async (tx, control) => {
      await appendToOutbox(tx, testEvent(type, 'a', 'rollbackOnly'));
      control.rollbackOnly();
    });
    expect((await rows()).map((row) => row.event_id)).toEqual([kept.id]);
  });

  it('afterCommit: a hook runs once after COMMIT, never after a rollback, and not outside inTransaction', async () => {
    const ran: string[] = [];
    const hook = () => ran.push('committed');
    await inTransaction(service, async (tx) => {
      expect(afterCommit(tx, hook)).toBe(true);
      expect(afterCommit(tx, hook)).toBe(true); // the same hook twice runs once
      expect(ran).toEqual([]); // not before COMMIT
    });
    expect(ran).toEqual(['committed']);
    await expect(
      inTransaction(service, async (tx) => {
        afterCommit(tx, () => ran.push('thrown'));
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    await inTransaction(service, async (tx, control) => {
      afterCommit(tx, () => ran.push('rollbackOnly'));
      control.rollbackOnly();
    });
    expect(ran).toEqual(['committed']);
    expect(afterCommit(service, hook)).toBe(false);
  });

  it("wakes the relay in its process once the writer committed, with no NOTIFY in the writer's transaction", async () => {
    // A NOTIFY in the order's transaction serialised every order's COMMIT (src/wake.ts).
    const listener = await service.connect();
    const heard: string[] = [];
    listener.on('notification', (message) => heard.push(message.payload ?? ''));
    await listener.query('LISTEN outbox');
    try {
      const published: string[] = [];
      const relay = relayFor(
        publishOnly(async (envelope) => {
          published.push(envelope.id);
          return { duplicate: false };
        }),
      );
      relay.start();
      await waitFor('the relay leading', () => relay.isLeader);
      const event = await commitEvent('test.v1.Thing', 'a');
      await waitFor('the event published', () => published.includes(event.id)); // pollMs is 60 s
      // Notifications reach a listener in commit order: once this one arrived, any the writer's
      // COMMIT sent would have too.
      await service.query("SELECT pg_notify('outbox', 'marker')");
      await waitFor('the marker', () => heard.includes('marker'));
      expect(heard).toEqual(['marker']);
    } finally {
      await listener.query('UNLISTEN *');
      listener.release();
    }
  });

  it('deletes a row once the broker confirmed it, by default (retainSentMs 0)', async () => {
    const published: string[] = [];
    let confirm: () => void = () => undefined;
    const confirmed = new Promise<void>((resolve) => (confirm = resolve));
    const relay = relayFor(
      publishOnly(async (envelope) => {
        published.push(envelope.id);
        await confirmed;
        return { duplicate: false };
      }),
      { retainSentMs: undefined },
    );
    relay.start();
    const event = await commitEvent('test.v1.Thing', 'a');
    await waitFor('the publish', () => published.includes(event.id));
    expect((await rows()).map((row) => row.event_id)).toEqual([event.id]); // not confirmed yet
    confirm();
    await waitFor('the row deleted', async () => (await rows()).length === 0);
  });

  it('publishes once the writer committed, and marks a row sent only once the transport confirmed it', async () => {
    const published: Envelope[] = [];
    let calls = 0;
    const confirm = deferred<PublishResult>();
    const relay = relayFor(
      publishOnly(async (envelope) => {
        calls++;
        if (calls === 1) throw new Error('broker unavailable');
        published.push(envelope);
        return confirm.promise; // the broker has it, and has not confirmed yet
      }),
    );
    relay.start();
    expect(await outboxBacklog(service)).toEqual({ events: 0, oldestUnsentSeconds: 0 });
    const event = await commitEvent('test.v1.Thing', 'a', 'payload');
    await waitFor('the second attempt', () => published.length === 1);
    const [pending] = await rows();
    expect(pending).toMatchObject({ sent_at: null, attempts: 1, last_error: 'broker unavailable' });
    const backlog = await outboxBacklog(service);
    expect(backlog.events).toBe(1);
    expect(backlog.oldestUnsentSeconds).toBeGreaterThan(0);
    confirm.resolve({ duplicate: false });
    await waitFor('the row marked sent', async () => (await rows())[0]!.sent_at !== null);
    expect((await outboxBacklog(service)).events).toBe(0);
    expect(published[0]).toMatchObject({
      id: event.id,
      type: event.type,
      aggregateId: 'a',
      payload: event.payload,
      traceparent: event.traceparent,
    });
    expect(published[0]!.sequence).toBeGreaterThan(0);
    expect(relay.isLeader).toBe(true);
  });

  it('listens again after losing its database connection: NOTIFY wakes it, not the next poll', async () => {
    const url = new URL(service.options.connectionString!);
    const proxy = new TcpProxy(await freePort(), {
      host: url.hostname,
      port: Number(url.port || 5432),
    });
    await proxy.start();
    try {
      url.host = proxy.address;
      const cutOff = new Pool({ connectionString: url.toString(), max: 3 });
      cutOff.on('error', () => undefined); // its idle connections drop with the proxy
      pools.push(cutOff);
      const published: string[] = [];
      const relay = relayFor(
        publishOnly(async (envelope) => {
          published.push(envelope.id);
          return { duplicate: false };
        }),
        { pool: cutOff },
      );
      relay.start();
      const before = await commitEvent('test.v1.Thing', 'a', 'before');
      await waitFor('the event before the outage', () => published.includes(before.id));

      await proxy.stop(); // the relay's connection (its LISTEN and its lock) dropped
      const during = await commitEvent('test.v1.Thing', 'a', 'during');
      await proxy.start();
      await waitFor('the event written during the outage', () => published.includes(during.id));
      // That round over, only a NOTIFY on its new connection makes the relay look again: this
      // writer is outside a transaction of inTransaction, so its statement NOTIFYs (src/outbox.ts).
      const after = testEvent('test.v1.Thing', 'a', 'after');
      await appendToOutbox(service, after);
      await waitFor('the event written after the outage', () => published.includes(after.id));
      // In order; `before` may have been sent twice (its mark lost with the connection: at least
      // once, which the broker's de-duplication absorbs).
      expect([...new Set(published)]).toEqual([before.id, during.id, after.id]);
      expect(relay.isLeader).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  it('re-sends after a crash between publish and mark; the consumer with an inbox applies it once', async () => {
    // The broker here keeps every copy (no de-duplication), as a redelivery would bring them.
    const broker: Envelope[] = [];
    const crashed = relayFor(
      publishOnly(async (envelope) => {
        broker.push(envelope);
        return new Promise<PublishResult>(() => undefined); // published; then the process dies
      }),
    );
    crashed.start();
    const event = await commitEvent('test.v1.Thing', 'a');
    await waitFor('the first publish', () => broker.length === 1);
    await crashed.stop(100); // the crash: its lock goes with its connection, the row stays unsent
    expect((await rows())[0]!.sent_at).toBeNull();

    const next = relayFor(
      publishOnly(async (envelope) => {
        broker.push(envelope);
        return { duplicate: false };
      }),
    );
    next.start();
    await waitFor('the re-send', async () => (await rows())[0]!.sent_at !== null);
    expect(broker.map((e) => e.id)).toEqual([event.id, event.id]);

    // The consumer applies each copy in its own database: the inbox makes the second a no-op.
    const consumer = await database(
      `${inboxMigrationSql()}; CREATE TABLE effects (event_id TEXT NOT NULL, applied_at TIMESTAMPTZ DEFAULT now());`,
    );
    const outcomes = [];
    for (const copy of broker) {
      outcomes.push(
        await inTransaction(consumer, (tx) =>
          handleOnce(tx, 'projection', copy.id, async (effectTx) => {
            await effectTx.query('INSERT INTO effects (event_id) VALUES ($1)', [copy.id]);
            return 'done';
          }),
        ),
      );
    }
    expect(outcomes).toEqual([{ applied: true, result: 'done' }, { applied: false }]);
    expect((await consumer.query('SELECT count(*)::int AS n FROM effects')).rows[0].n).toBe(1);
  });

  it('rolls back the inbox row with an effect that fails, so the event applies when it comes again', async () => {
    const consumer = await database(`${inboxMigrationSql()}; CREATE TABLE effects (n INT);`);
    const apply = (fail: boolean) =>
      inTransaction(consumer, (tx) =>
        handleOnce(tx, 'projection', 'e1', async (effectTx) => {
          await effectTx.query('INSERT INTO effects VALUES (1)');
          if (fail) throw new Error('effect failed');
        }),
      );
    await expect(apply(true)).rejects.toThrow('effect failed');
    await expect(apply(false)).resolves.toEqual({ applied: true, result: undefined });
    await expect(apply(false)).resolves.toEqual({ applied: false });
    // Another consumer of the same event has its own record.
    await expect(
      inTransaction(consumer, (tx) => handleOnce(tx, 'audit', 'e1', async () => 'audited')),
    ).resolves.toEqual({ applied: true, result: 'audited' });
    expect((await consumer.query('SELECT count(*)::int AS n FROM effects')).rows[0].n).toBe(1);
  });

  it('two relays at once: one publishes, the other takes over when it stops, and every aggregate stays in order', async () => {
    const broker = await createDatabase();
    drops.push(broker.drop);
    const transport = await createPostgresTransport({ url: broker.url, pollMs: 100 });
    try {
      const type = `test.v1.${unique('Ordered')}`;
      const handled: Delivery[] = [];
      const subscription = await transport.subscribe(
        unique('consumer'),
        [subjectOf(type)],
        async (delivery) => {
          handled.push(delivery);
        },
      );
      const relays = [relayFor(transport, { batchSize: 7 }), relayFor(transport, { batchSize: 7 })];
      for (const relay of relays) relay.start();
      await waitFor('a leader', () => relays.some((relay) => relay.isLeader));

      const aggregates = ['a', 'b', 'c', 'd'];
      const writes = aggregates.map(async (aggregate) => {
        for (let i = 0; i < 15; i++) await commitEvent(type, aggregate, String(i));
      });
      await waitFor('some events handled', () => handled.length >= 10);
      const leader = relays.find((relay) => relay.isLeader)!;
      await leader.stop(); // the other one takes over, mid-stream
      await Promise.all(writes);
      await waitFor('every event handled', () => handled.length >= 60, 20_000);
      await waitFor('the other relay leading', () =>
        relays.some((r) => r !== leader && r.isLeader),
      );
      await subscription.stop();

      expect(new Set(handled.map((d) => d.envelope.id)).size).toBe(60);
      for (const aggregate of aggregates) {
        const bodies = handled
          .filter((d) => d.envelope.aggregateId === aggregate)
          .map((d) => Number(bodyOf(d.envelope)));
        expect(bodies).toEqual(Array.from({ length: 15 }, (_, i) => i));
      }
      expect((await rows()).every((row) => row.sent_at !== null)).toBe(true);
    } finally {
      await transport.close();
    }
  });

  it('end to end over NATS JetStream: outbox, relay, consumer with an inbox, applied once per event', async () => {
    const stream = unique('TEST_RELAY');
    const prefix = unique('test_relay');
    const transport = await createNatsTransport({ servers: NATS_URL, stream, prefix });
    try {
      const consumerDb = await database(
        `${inboxMigrationSql()}; CREATE TABLE effects (event_id TEXT NOT NULL);`,
      );
      const type = `test.v1.${unique('Relayed')}`;
      let deliveries = 0;
      const subscription = await transport.subscribe(
        'projection',
        [subjectOf(type, prefix)],
        async ({ envelope }) => {
          deliveries++;
          await inTransaction(consumerDb, (tx) =>
            handleOnce(tx, 'projection', envelope.id, async (effectTx) => {
              await effectTx.query('INSERT INTO effects VALUES ($1)', [envelope.id]);
            }),
          );
        },
        { ackWaitMs: 2000 },
      );
      relayFor(transport).start();
      const events = [];
      for (let i = 0; i < 5; i++) events.push(await commitEvent(type, `agg${i % 2}`, String(i)));
      await waitFor('every event applied', async () => {
        const { rows: applied } = await consumerDb.query('SELECT event_id FROM effects');
        return applied.length === events.length;
      });
      // The relay re-sends one (as after a crash); JetStream de-duplicates it by id.
      expect(await transport.publish(events[0]!)).toEqual({ duplicate: true });
      await subscription.stop();
      expect(deliveries).toBe(5);
      expect((await rows()).every((row) => row.sent_at !== null)).toBe(true);
    } finally {
      await transport.jsm.streams.delete(stream).catch(() => undefined);
      await transport.jsm.streams.delete(`${stream}_DEAD`).catch(() => undefined);
      await transport.close();
    }
  });
});
