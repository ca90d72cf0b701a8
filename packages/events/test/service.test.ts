import { Pool } from 'pg';
import type { EventsSettings } from '../src/connect';
import { createPostgresTransport } from '../src/postgres';
import { startServiceEvents, type EventsLogger, type ServiceEvents } from '../src/service';
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
});
