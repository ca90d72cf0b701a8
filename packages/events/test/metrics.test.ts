import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { createRegistry } from '@repo/service-kit/metrics';
import { freePort } from '@repo/service-kit/ports';
import { TcpProxy, checkMetricsWithPromtool } from '@repo/service-kit/testing';
import { newEnvelope } from '../src/envelope';
import { eventsMetrics, lastKnown } from '../src/metrics';
import { appendToOutbox, outboxMigrationSql } from '../src/outbox';
import { createPostgresTransport } from '../src/postgres';
import { subjectOf } from '../src/subjects';
import { createDatabase, testEvent, unique, waitFor } from './helpers';

/** The value of one series of a scrape (`name` or `name{label="value"}`), as Prometheus reads it. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('events metrics (real PostgreSQL)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A database with a service's outbox, and a pool on it (through `port` when given). */
  async function outboxDatabase(): Promise<{ url: string; pool: Pool }> {
    const database = await createDatabase();
    cleanups.push(database.drop);
    const pool = new Pool({ connectionString: database.url, max: 3 });
    cleanups.push(() => pool.end());
    await pool.query(outboxMigrationSql());
    return { url: database.url, pool };
  }

  /** `count` unsent events that occurred `agoSeconds` ago. */
  async function append(pool: Pool, count: number, agoSeconds = 0): Promise<void> {
    for (let i = 0; i < count; i++) {
      const occurredAt = new Date(Date.now() - agoSeconds * 1000);
      await appendToOutbox(
        pool,
        newEnvelope({
          type: 'test.v1.Thing',
          aggregateId: 'a',
          payload: new Uint8Array(),
          source: 'test',
          occurredAt,
        }),
      );
    }
  }

  it('reads the outbox backlog and the age of its oldest unsent event when scraped', async () => {
    const { pool } = await outboxDatabase();
    const registry = new Registry();
    eventsMetrics(registry, { outbox: pool });
    let text = await registry.metrics();
    expect(sample(text, 'outbox_backlog_events')).toBe(0);
    expect(sample(text, 'outbox_oldest_unsent_seconds')).toBe(0);

    await append(pool, 2, 90);
    await append(pool, 1);
    text = await registry.metrics();
    expect(sample(text, 'outbox_backlog_events')).toBe(3);
    expect(sample(text, 'outbox_oldest_unsent_seconds')).toBeGreaterThanOrEqual(90);
    expect(sample(text, 'outbox_oldest_unsent_seconds')).toBeLessThan(3600);

    await pool.query(`UPDATE "outbox" SET "sent_at" = now()`);
    text = await registry.metrics();
    expect(sample(text, 'outbox_backlog_events')).toBe(0);
    expect(sample(text, 'outbox_oldest_unsent_seconds')).toBe(0);
  });

  it('answers the last values while the database hangs or is down, and fresh ones once it is back', async () => {
    const { url, pool: direct } = await outboxDatabase();
    const server = new URL(url);
    const proxy = new TcpProxy(await freePort(), {
      host: server.hostname,
      port: Number(server.port),
    });
    await proxy.start();
    cleanups.push(() => proxy.stop());
    const proxied = new URL(url);
    proxied.host = proxy.address;
    const pool = new Pool({
      connectionString: proxied.toString(),
      max: 2,
      connectionTimeoutMillis: 5_000,
    });
    pool.on('error', () => undefined); // idle clients cut by the proxy
    cleanups.push(() => pool.end());
    const registry = new Registry();
    eventsMetrics(registry, { outbox: pool, readTimeoutMs: 300 });

    await append(direct, 2, 60);
    expect(sample(await registry.metrics(), 'outbox_backlog_events')).toBe(2);

    proxy.hang();
    await append(direct, 1);
    for (let scrape = 0; scrape < 3; scrape++) {
      const text = await registry.metrics();
      expect(sample(text, 'outbox_backlog_events')).toBe(2);
      expect(sample(text, 'outbox_oldest_unsent_seconds')).toBeGreaterThanOrEqual(60);
    }

    proxy.down(); // connections dropped, new ones reset
    expect(sample(await registry.metrics(), 'outbox_backlog_events')).toBe(2);

    proxy.up();
    await waitFor(
      'the backlog read again',
      async () => sample(await registry.metrics(), 'outbox_backlog_events') === 3,
      30_000,
    );
  });

  it('reads each consumer’s lag from the transport and counts its dead letters', async () => {
    const broker = await createDatabase();
    cleanups.push(broker.drop);
    const transport = await createPostgresTransport({ url: broker.url, pollMs: 50 });
    cleanups.push(() => transport.close());
    const type = `test.v1.${unique('Counted')}`;
    const working = unique('working');
    const idle = unique('idle');
    const registry = new Registry();
    const metrics = eventsMetrics(registry, { transport, consumers: [working, idle] });

    let text = await registry.metrics();
    for (const consumer of [working, idle]) {
      expect(sample(text, `consumer_lag_events{consumer="${consumer}"}`)).toBe(0);
      expect(sample(text, `dead_letters_total{consumer="${consumer}"}`)).toBe(0);
    }

    // `idle` exists (it subscribed once) and handles nothing; `working` dead-letters the poison.
    await (await transport.subscribe(idle, [subjectOf(type)], () => Promise.resolve())).stop();
    const handled: string[] = [];
    const subscription = await transport.subscribe(
      working,
      [subjectOf(type)],
      async ({ envelope }) => {
        if (Buffer.from(envelope.payload).toString() === 'poison') throw new Error('poison');
        handled.push(envelope.id);
      },
      { maxAttempts: 2, backoff: { initialMs: 10, maxMs: 20 }, onDeadLetter: metrics.onDeadLetter },
    );
    cleanups.push(() => subscription.stop());
    for (const [aggregate, body] of [
      ['a', 'poison'],
      ['a', 'fine'],
      ['b', 'fine'],
    ] as const) {
      await transport.publish(testEvent(type, aggregate, body));
    }

    await waitFor('both good events handled', () => handled.length === 2);
    await waitFor(
      'the dead letter counted',
      async () =>
        sample(await registry.metrics(), `dead_letters_total{consumer="${working}"}`) === 1,
    );
    text = await registry.metrics();
    expect(sample(text, `consumer_lag_events{consumer="${working}"}`)).toBe(0);
    expect(sample(text, `consumer_lag_events{consumer="${idle}"}`)).toBe(3);
    expect(sample(text, `dead_letters_total{consumer="${idle}"}`)).toBe(0);
  });

  it('answers at once when the broker never does, asking it once however many scrapes come', async () => {
    let asked = 0;
    const unanswered = new Promise<number>(() => undefined);
    const transport = {
      pending: () => {
        asked++;
        return unanswered;
      },
    };
    const registry = new Registry();
    eventsMetrics(registry, { transport, consumers: ['c'], readTimeoutMs: 100 });
    for (let scrape = 0; scrape < 3; scrape++) {
      expect(sample(await registry.metrics(), 'consumer_lag_events{consumer="c"}')).toBe(0);
    }
    expect(asked).toBe(1);
  });

  it('lastKnown keeps the last answer through failures and reads again after each', async () => {
    const answers: (() => Promise<number>)[] = [
      () => Promise.resolve(1),
      () => Promise.reject(new Error('down')),
      () => Promise.resolve(2),
    ];
    const read = lastKnown(() => answers.shift()!(), 0, 1_000);
    expect([await read(), await read(), await read()]).toEqual([1, 1, 2]);
  });

  it('exposes what promtool check metrics accepts, beside the default process metrics', async () => {
    const { pool } = await outboxDatabase();
    await append(pool, 1, 5);
    const registry = createRegistry();
    const metrics = eventsMetrics(registry, {
      outbox: pool,
      transport: { pending: () => Promise.resolve(4) },
      consumers: ['order-user-projection'],
    });
    metrics.onDeadLetter({
      consumer: 'order-user-projection',
      envelope: testEvent('test.v1.Thing', 'a'),
      subject: subjectOf('test.v1.Thing'),
      attempts: 5,
      error: 'boom',
      deadAt: new Date(),
    });
    const text = await registry.metrics();
    expect(await checkMetricsWithPromtool(text)).toBe('');
    expect(sample(text, 'consumer_lag_events{consumer="order-user-projection"}')).toBe(4);
    expect(sample(text, 'dead_letters_total{consumer="order-user-projection"}')).toBe(1);
    expect(text).toContain('# TYPE dead_letters_total counter');
    expect(text).toContain('# TYPE outbox_backlog_events gauge');
  });
});
