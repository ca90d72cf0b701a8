import { createNatsTransport } from '../src/nats';
import { transportContract } from './transport-contract';
import { jetstream } from '@nats-io/jetstream';
import { subjectOf } from '../src/subjects';
import { NATS_URL, testEvent, unique, waitFor } from './helpers';

// NATS with JetStream runs on every CI machine (127.0.0.1:4222; NATS_URL to use another). When it
// is not there, these tests fail and say so: they are never skipped.
describe(`NATS JetStream transport (${NATS_URL})`, () => {
  const stream = unique('TEST_EVENTS');
  const prefix = unique('test_events');
  let cleanup: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await cleanup?.();
  });

  transportContract(async () => {
    const admin = await createNatsTransport({ servers: NATS_URL, stream, prefix });
    cleanup = async () => {
      await admin.jsm.streams.delete(stream).catch(() => undefined);
      await admin.jsm.streams.delete(`${stream}_DEAD`).catch(() => undefined);
      await admin.close();
    };
    const target = new URL(NATS_URL);
    return {
      prefix,
      target: { host: target.hostname, port: Number(target.port || 4222) },
      open: ({ via, ...options } = {}) =>
        createNatsTransport({
          servers: via ? `nats://${via}` : NATS_URL,
          stream,
          prefix,
          ...options,
        }),
    };
  });
});

describe('NATS JetStream transport: foreign messages', () => {
  it('terminates and reports a message that is not an envelope instead of retrying it forever', async () => {
    const stream = unique('TEST_FOREIGN');
    const prefix = unique('test_foreign');
    const transport = await createNatsTransport({ servers: NATS_URL, stream, prefix });
    try {
      const type = 'test.v1.Thing';
      const errors: unknown[] = [];
      const handled: string[] = [];
      const subscription = await transport.subscribe(
        unique('c'),
        [subjectOf(type, prefix)],
        async ({ envelope }) => {
          handled.push(envelope.id);
        },
        { ackWaitMs: 2000, onError: (error) => errors.push(error) },
      );
      await jetstream(transport.nc).publish(subjectOf(type, prefix), Buffer.from([0xff, 0xff]));
      const event = testEvent(type, 'a');
      await transport.publish(event);
      await waitFor('the event after the foreign message', () => handled.includes(event.id));
      await subscription.stop();
      expect(String(errors[0])).toMatch(/not an event envelope/);
    } finally {
      await transport.jsm.streams.delete(stream).catch(() => undefined);
      await transport.jsm.streams.delete(`${stream}_DEAD`).catch(() => undefined);
      await transport.close();
    }
  });
});
