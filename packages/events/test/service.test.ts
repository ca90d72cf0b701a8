import { Pool } from 'pg';
import type { EventsSettings } from '../src/connect';
import { inboxMigrationSql } from '../src/outbox';
import { createPostgresTransport } from '../src/postgres';
import {
  INBOX_RETENTION_MS,
  startServiceEvents,
  type EventsLogger,
  type ServiceEvents,
} from '../src/service';
import { subjectOf } from '../src/subjects';
import type { Delivery } from '../src/transport';
import { createDatabase, testEvent, unique, waitFor } from './helpers';

/** Records what startServiceEvents logs, message by message. */
function recordingLogger(): EventsLogger & { messages: string[] } {
  const messages: string[] = [];
  const log = (_fields: object, message: string) => void messages.push(message);
  return { messages, info: log, warn: log, error: log };
}

describe('startServiceEvents (PostgreSQL transport)', () => {
  let database: { url: string; drop(): Promise<void> };
  let broker: Pool;
  let settings: EventsSettings;
  const running: ServiceEvents[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);

  beforeAll(async () => {
    database = await createDatabase();
    broker = new Pool({ connectionString: database.url, max: 2 });
    settings = { EVENTS_TRANSPORT: 'postgres', EVENTS_DATABASE_URL: database.url, NATS_URL: '' };
    process.on('unhandledRejection', onUnhandled);
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await Promise.all(running.map((events) => events.stop()));
    await broker.end();
    await database.drop();
  });

  it('retries a subscribe that fails after connecting, until subscribed; started never rejects', async () => {
    const consumer = unique('c');
    const type = `test.v1.${unique('Event')}`;
    // The consumer exists with other subjects: subscribing fails (after a successful connection)
    // until that consumer is gone, as it would while the broker blips.
    const other = await createPostgresTransport({ url: database.url });
    await (
      await other.subscribe(consumer, [subjectOf('test.v1.Other')], async () => undefined)
    ).stop();
    await other.close();

    const logger = recordingLogger();
    const handled: Delivery[] = [];
    const events = startServiceEvents({
      settings,
      service: 'test',
      logger,
      reconnect: { initialMs: 50, maxMs: 200 },
      consumers: [
        { consumer, types: [type], handler: async (delivery) => void handled.push(delivery) },
      ],
    });
    running.push(events);
    await waitFor(
      'two failed attempts to subscribe',
      () => logger.messages.filter((message) => message.includes('cannot connect')).length >= 2,
    );
    expect(events.transport).toBeUndefined();
    await broker.query('DELETE FROM events_consumers WHERE name = $1', [consumer]);

    await expect(events.started).resolves.toBeUndefined();
    expect(logger.messages).toContain('events: connected');
    const event = testEvent(type, 'a');
    await events.transport!.publish(event);
    await waitFor('the event handled', () => handled.some((d) => d.envelope.id === event.id));
    expect(unhandled).toEqual([]);
  });

  it("prunes its consumers' inbox of rows older than the broker keeps events", async () => {
    const service = await createDatabase();
    const pool = new Pool({ connectionString: service.url, max: 2 });
    try {
      await pool.query(inboxMigrationSql());
      const days = (n: number) => `now() - make_interval(days => ${n})`;
      await pool.query(
        `INSERT INTO inbox (consumer, event_id, processed_at) VALUES
           ('c', 'old', ${days(9)}), ('c', 'week', ${days(7)}), ('c', 'new', now())`,
      );
      expect(INBOX_RETENTION_MS).toBeGreaterThan(7 * 24 * 3600_000);
      const events = startServiceEvents({
        settings,
        service: 'test',
        logger: recordingLogger(),
        inbox: pool,
        consumers: [{ consumer: unique('c'), types: ['test.v1.Pruned'], handler: async () => {} }],
      });
      running.push(events);
      const left = async () =>
        (
          await pool.query<{ event_id: string }>('SELECT event_id FROM inbox ORDER BY event_id')
        ).rows.map((row) => row.event_id);
      await waitFor('the old row pruned', async () => !(await left()).includes('old'));
      expect(await left()).toEqual(['new', 'week']);
      await events.stop();
    } finally {
      await pool.end();
      await service.drop();
    }
  });
});
