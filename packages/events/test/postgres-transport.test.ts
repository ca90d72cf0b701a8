import { createPostgresTransport } from '../src/postgres';
import { transportContract } from './transport-contract';
import { createDatabase, testEvent, unique, waitFor } from './helpers';
import { subjectOf } from '../src/subjects';

describe('PostgreSQL transport (broker database of its own)', () => {
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await drop?.();
  });

  transportContract(async () => {
    const database = await createDatabase();
    drop = database.drop;
    return {
      prefix: 'events',
      open: () => createPostgresTransport({ url: database.url, pollMs: 100 }),
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
