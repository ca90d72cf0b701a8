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

describe('NATS JetStream transport: stream replicas', () => {
  const stream = unique('TEST_REPLICAS');
  const prefix = unique('test_replicas');
  const open = (replicas?: number) =>
    createNatsTransport({
      servers: NATS_URL,
      stream,
      prefix,
      ...(replicas ? { replicas } : {}),
    });
  const replicasOf = async (transport: Awaited<ReturnType<typeof open>>) =>
    Promise.all(
      [stream, `${stream}_DEAD`].map(
        async (name) => (await transport.jsm.streams.info(name)).config.num_replicas,
      ),
    );
  afterAll(async () => {
    const admin = await open();
    await admin.jsm.streams.delete(stream).catch(() => undefined);
    await admin.jsm.streams.delete(`${stream}_DEAD`).catch(() => undefined);
    await admin.close();
  });

  // The test server is a single one: more than 1 replica can only be refused (creating a stream),
  // so that case checks the refusal says what was asked and of which stream.
  it('refuses more replicas than a single server has, naming the stream and the replicas', async () => {
    await expect(open(3)).rejects.toThrow(
      `cannot create stream ${stream} with 3 replica(s): replicas > 1 not supported in non-clustered mode`,
    );
  });

  it('creates both streams with the replicas asked for, applies them to existing ones, and keeps them when not told', async () => {
    const first = await open(1);
    expect(await replicasOf(first)).toEqual([1, 1]);
    await first.close();
    // An existing stream with 3 replicas, as on the production cluster. NATS 2.9 (the CI machines)
    // stores that setting on a single server when a stream is updated; a server that refuses it
    // leaves nothing to keep or change, and this test ends there.
    const admin = await open();
    try {
      for (const name of [stream, `${stream}_DEAD`]) {
        const { config } = await admin.jsm.streams.info(name);
        await admin.jsm.streams.update(name, { ...config, num_replicas: 3 });
      }
    } catch (error) {
      expect(String(error)).toMatch(/replicas > 1 not supported in non-clustered mode/);
      await admin.close();
      return;
    }
    await admin.close();
    const unsaid = await open(); // the events CLI, say: no EVENTS_STREAM_REPLICAS
    expect(await replicasOf(unsaid)).toEqual([3, 3]);
    await unsaid.close();
    const told = await open(1);
    expect(await replicasOf(told)).toEqual([1, 1]);
    await told.close();
  });
});
