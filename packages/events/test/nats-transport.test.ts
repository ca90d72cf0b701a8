import { createNatsTransport } from '../src/nats';
import { transportContract } from './transport-contract';
import { NATS_URL, unique } from './helpers';

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
    return {
      prefix,
      open: () => createNatsTransport({ servers: NATS_URL, stream, prefix }),
    };
  });
});
