import { freePort } from '@repo/service-kit/ports';
import { TcpProxy } from '@repo/service-kit/testing';
import { subjectOf } from '../src/subjects';
import {
  permanentError,
  type DeadLetter,
  type Delivery,
  type SubscribeOptions,
  type Transport,
} from '../src/transport';
import { bodyOf, deferred, testEvent, unique, waitFor } from './helpers';

/** What the contract needs from a transport under test. */
export interface TransportUnderTest {
  /**
   * A connected transport on this file's broker namespace (several may be open at once);
   * `liveInactiveMs` shortens how long a live consumer outlives its vanished process, `via`
   * (host:port) reaches the broker through that address instead of `target`'s.
   */
  open(options?: OpenOptions): Promise<Transport>;
  /** The broker's address (for a proxy in front of it). */
  target: { host: string; port: number };
  /** The subject prefix of that namespace. */
  prefix: string;
}

export interface OpenOptions {
  liveInactiveMs?: number;
  via?: string;
}

/** Short timings so the suite stays fast; production defaults are much longer. */
const FAST: SubscribeOptions = {
  ackWaitMs: 2000,
  maxAttempts: 3,
  backoff: { initialMs: 50, maxMs: 200 },
};

/**
 * The one contract every transport passes (see Transport in src/transport.ts). Each test uses its
 * own event type (so its own subject) and consumer names, so tests never see each other's events.
 */
export function transportContract(setUp: () => Promise<TransportUnderTest>): void {
  let subject: TransportUnderTest;
  const open: Transport[] = [];
  const connect = async (options?: OpenOptions) => {
    const transport = await subject.open(options);
    open.push(transport);
    return transport;
  };
  let transport: Transport;

  beforeAll(async () => {
    subject = await setUp();
    transport = await connect();
  });
  afterAll(async () => {
    await Promise.all(open.map((t) => t.close()));
  });

  const newType = () => `test.v1.${unique('Event')}`;
  const subjectFor = (type: string) => subjectOf(type, subject.prefix);

  /** Subscribes and records every delivery; `handle` decides each one's fate (default: ack). */
  async function record(
    on: Transport,
    consumer: string,
    type: string,
    handle: (delivery: Delivery) => Promise<void> = async () => undefined,
    options: SubscribeOptions = FAST,
  ) {
    const deliveries: Delivery[] = [];
    const acked: Delivery[] = [];
    const subscription = await on.subscribe(
      consumer,
      [subjectFor(type)],
      async (delivery) => {
        deliveries.push(delivery);
        await handle(delivery);
        acked.push(delivery);
      },
      options,
    );
    return { deliveries, acked, subscription };
  }

  it('delivers what is published, with its envelope intact and attempt 1', async () => {
    const type = newType();
    const { acked, subscription } = await record(transport, unique('c'), type);
    const events = [testEvent(type, 'a1', 'one'), testEvent(type, 'a2', 'two')];
    for (const event of events)
      expect(await transport.publish(event)).toEqual({ duplicate: false });
    await waitFor('both events', () => acked.length === 2);
    await subscription.stop();
    const byId = new Map(acked.map((d) => [d.envelope.id, d]));
    for (const event of events) {
      const delivery = byId.get(event.id)!;
      expect(delivery.attempt).toBe(1);
      expect(delivery.subject).toBe(subjectFor(type));
      expect(delivery.envelope).toEqual(event);
    }
  });

  it('stores an event id once: a second publish is a duplicate and is not delivered', async () => {
    const type = newType();
    const { acked, subscription } = await record(transport, unique('c'), type);
    const event = testEvent(type, 'a', 'once');
    expect(await transport.publish(event)).toEqual({ duplicate: false });
    expect(await transport.publish(event)).toEqual({ duplicate: true });
    // A later event of the same aggregate, delivered after the first: by then a second copy would
    // have been delivered too.
    const sentinel = testEvent(type, 'a', 'sentinel');
    await transport.publish(sentinel);
    await waitFor('the sentinel', () => acked.some((d) => d.envelope.id === sentinel.id));
    await subscription.stop();
    expect(acked.filter((d) => d.envelope.id === event.id)).toHaveLength(1);
  });

  it('publishes several at once when it can (publishMany): in order, duplicates stored once', async () => {
    if (!transport.publishMany) return; // optional: the relay publishes one by one without it
    const type = newType();
    const { acked, subscription } = await record(transport, unique('c'), type);
    const first = testEvent(type, 'a', '0');
    await transport.publish(first);
    const batch = [first, ...[1, 2, 3].map((i) => testEvent(type, 'a', String(i)))];
    batch.push(testEvent(type, 'b', '0'));
    expect(await transport.publishMany(batch)).toEqual([
      { duplicate: true },
      { duplicate: false },
      { duplicate: false },
      { duplicate: false },
      { duplicate: false },
    ]);
    await waitFor('every event', () => acked.length === 5);
    await subscription.stop();
    const bodies = (aggregate: string) =>
      acked.filter((d) => d.envelope.aggregateId === aggregate).map((d) => bodyOf(d.envelope));
    expect(bodies('a')).toEqual(['0', '1', '2', '3']);
    expect(bodies('b')).toEqual(['0']);
    expect(await transport.publishMany([])).toEqual([]);
  });

  it('delivers again, with the next attempt number, what a handler failed', async () => {
    const type = newType();
    const { deliveries, acked, subscription } = await record(
      transport,
      unique('c'),
      type,
      async (delivery) => {
        if (delivery.attempt < 2) throw new Error('not yet');
      },
    );
    const event = testEvent(type, 'a');
    await transport.publish(event);
    await waitFor('the event acknowledged', () => acked.length === 1);
    await subscription.stop();
    expect(deliveries.map((d) => d.attempt)).toEqual([1, 2]);
  });

  it('delivers again what a consumer that died never acknowledged', async () => {
    const type = newType();
    const consumer = unique('c');
    const first = await connect();
    const received = deferred();
    await first.subscribe(
      consumer,
      [subjectFor(type)],
      () => {
        received.resolve();
        return new Promise<void>(() => undefined); // hangs: the process "dies" while handling
      },
      FAST,
    );
    const event = testEvent(type, 'a');
    await transport.publish(event);
    await received.promise;
    await first.close(); // the crash: connections gone, nothing acknowledged
    const second = await connect();
    const { acked, subscription } = await record(second, consumer, type);
    await waitFor('the redelivery', () => acked.length === 1);
    await subscription.stop();
    expect(acked[0]!.envelope.id).toBe(event.id);
    expect(acked[0]!.attempt).toBe(2);
  });

  it('handles the events of one aggregate one at a time, in publication order, across failures', async () => {
    const type = newType();
    const busy = new Set<string>();
    const overlaps: string[] = [];
    const { acked, subscription } = await record(transport, unique('c'), type, async (d) => {
      const aggregate = d.envelope.aggregateId;
      if (busy.has(aggregate)) overlaps.push(aggregate);
      busy.add(aggregate);
      try {
        await new Promise((resolve) => setTimeout(resolve, 2));
        // Every third event fails its first attempt: the ones after it must wait.
        if (Number(bodyOf(d.envelope)) % 3 === 0 && d.attempt === 1) throw new Error('flaky');
      } finally {
        busy.delete(aggregate);
      }
    });
    const aggregates = ['x', 'y', 'z'];
    const published = new Map(aggregates.map((a) => [a, [] as string[]]));
    for (let i = 0; i < 8; i++) {
      for (const aggregate of aggregates) {
        const event = testEvent(type, aggregate, String(i));
        published.get(aggregate)!.push(event.id);
        await transport.publish(event);
      }
    }
    await waitFor('every event acknowledged', () => acked.length === 24, 30_000);
    await subscription.stop();
    expect(overlaps).toEqual([]);
    for (const aggregate of aggregates) {
      const order = acked.filter((d) => d.envelope.aggregateId === aggregate);
      expect(order.map((d) => d.envelope.id)).toEqual(published.get(aggregate));
    }
  });

  it('dead-letters an event after maxAttempts, lets the next one through, and replays it to that consumer only', async () => {
    const type = newType();
    const consumer = unique('c');
    let healthy = false;
    const dead: DeadLetter[] = [];
    const { deliveries, acked, subscription } = await record(
      transport,
      consumer,
      type,
      async (d) => {
        if (bodyOf(d.envelope) === 'poison' && !healthy) throw new Error('cannot handle poison');
      },
      { ...FAST, onDeadLetter: (letter) => dead.push(letter) },
    );
    const other = await record(transport, unique('other'), type);
    const poison = testEvent(type, 'a', 'poison');
    const next = testEvent(type, 'a', 'next');
    await transport.publish(poison);
    await transport.publish(next);

    await waitFor('the next event, after the poison was dead-lettered', () =>
      acked.some((d) => d.envelope.id === next.id),
    );
    expect(deliveries.filter((d) => d.envelope.id === poison.id).map((d) => d.attempt)).toEqual([
      1, 2, 3,
    ]);
    expect(dead.map((letter) => letter.envelope.id)).toEqual([poison.id]);
    const listed = await transport.deadLetters(consumer);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({
      consumer,
      subject: subjectFor(type),
      attempts: 3,
      error: 'cannot handle poison',
    });
    expect(listed[0]!.envelope).toEqual(poison);
    expect(await transport.deadLetters(unique('nobody'))).toEqual([]);

    healthy = true;
    await transport.replayDeadLetter(consumer, poison.id);
    await waitFor('the replayed event', () => acked.some((d) => d.envelope.id === poison.id));
    expect(acked.find((d) => d.envelope.id === poison.id)!.attempt).toBe(1);
    expect(await transport.deadLetters(consumer)).toEqual([]);
    await expect(transport.replayDeadLetter(consumer, poison.id)).rejects.toThrow(/no dead letter/);

    // The other consumer had both events once, and not the replay.
    const sentinel = testEvent(type, 'a', 'sentinel');
    await transport.publish(sentinel);
    await waitFor('the sentinel', () => other.acked.some((d) => d.envelope.id === sentinel.id));
    expect(other.acked.map((d) => bodyOf(d.envelope))).toEqual(['poison', 'next', 'sentinel']);
    await subscription.stop();
    await other.subscription.stop();
  });

  it('dead-letters at once an event whose handler throws a permanent error, and retries the others', async () => {
    const type = newType();
    const consumer = unique('c');
    const dead: DeadLetter[] = [];
    let transientFailures = 0;
    const { deliveries, acked, subscription } = await record(
      transport,
      consumer,
      type,
      async (d) => {
        if (bodyOf(d.envelope) === 'undecodable') throw permanentError('cannot decode it');
        // Fails as often as maxAttempts allows, less one: it must still be applied.
        if (bodyOf(d.envelope) === 'flaky' && d.attempt < 3) {
          transientFailures++;
          throw new Error('database restarting');
        }
      },
      { ...FAST, onDeadLetter: (letter) => dead.push(letter) },
    );
    const undecodable = testEvent(type, 'a', 'undecodable');
    const flaky = testEvent(type, 'a', 'flaky');
    await transport.publish(undecodable);
    await transport.publish(flaky);

    await waitFor('the flaky event, after two failures', () =>
      acked.some((d) => d.envelope.id === flaky.id),
    );
    expect(transientFailures).toBe(2);
    expect(
      deliveries.filter((d) => d.envelope.id === undecodable.id).map((d) => d.attempt),
    ).toEqual([1]);
    expect(dead.map((letter) => [letter.envelope.id, letter.attempts])).toEqual([
      [undecodable.id, 1],
    ]);
    expect(await transport.deadLetters(consumer)).toMatchObject([
      { attempts: 1, error: 'cannot decode it' },
    ]);
    await subscription.stop();
  });

  it('counts what a consumer has not acknowledged yet', async () => {
    const type = newType();
    const consumer = unique('c');
    expect(await transport.pending(consumer)).toBe(0);
    const first = await record(transport, consumer, type);
    const sentinel = testEvent(type, 'a', 'sentinel');
    await transport.publish(sentinel);
    await waitFor('the consumer caught up', () => first.acked.length === 1);
    await first.subscription.stop();
    await transport.publish(testEvent(type, 'a', '1'));
    await transport.publish(testEvent(type, 'b', '2'));
    expect(await transport.pending(consumer)).toBe(2);
    const again = await record(transport, consumer, type);
    await waitFor('the backlog handled', () => again.acked.length === 2);
    await waitFor('no lag', async () => (await transport.pending(consumer)) === 0);
    await again.subscription.stop();
  });

  it('gives every consumer its own copy, including one that subscribes after the events were published', async () => {
    const type = newType();
    const first = await record(transport, unique('c1'), type);
    const events = [testEvent(type, 'a', '1'), testEvent(type, 'b', '2')];
    for (const event of events) await transport.publish(event);
    await waitFor('the first consumer', () => first.acked.length === 2);
    const late = await record(transport, unique('c2'), type);
    await waitFor('the late consumer', () => late.acked.length === 2);
    await first.subscription.stop();
    await late.subscription.stop();
    const ids = (list: Delivery[]) => list.map((d) => d.envelope.id).sort();
    expect(ids(first.acked)).toEqual(events.map((e) => e.id).sort());
    expect(ids(late.acked)).toEqual(events.map((e) => e.id).sort());
  });

  describe('live subscriptions', () => {
    const LIVE: SubscribeOptions = { ...FAST, live: true };

    it('delivers only what is published after subscribing', async () => {
      const type = newType();
      const before = testEvent(type, 'a', 'before');
      await transport.publish(before);
      const live = await record(transport, unique('live'), type, undefined, LIVE);
      const after = [testEvent(type, 'a', 'after'), testEvent(type, 'b', 'after')];
      for (const event of after) await transport.publish(event);
      await waitFor('the events published after', () => live.acked.length >= 2);
      // A durable consumer would have had `before` first: give it the time of one more event.
      const sentinel = testEvent(type, 'a', 'sentinel');
      await transport.publish(sentinel);
      await waitFor('the sentinel', () => live.acked.some((d) => d.envelope.id === sentinel.id));
      await live.subscription.stop();
      expect(live.acked.map((d) => d.envelope.id).sort()).toEqual(
        [...after, sentinel].map((e) => e.id).sort(),
      );
    });

    it('gives every live subscriber every event', async () => {
      const type = newType();
      const first = await record(transport, unique('live1'), type, undefined, LIVE);
      const second = await record(await connect(), unique('live2'), type, undefined, LIVE);
      const events = [
        testEvent(type, 'a', '1'),
        testEvent(type, 'b', '2'),
        testEvent(type, 'a', '3'),
      ];
      for (const event of events) await transport.publish(event);
      await waitFor(
        'both subscribers',
        () => first.acked.length === 3 && second.acked.length === 3,
      );
      await first.subscription.stop();
      await second.subscription.stop();
      const ids = (list: Delivery[]) => list.map((d) => d.envelope.id).sort();
      expect(ids(first.acked)).toEqual(events.map((e) => e.id).sort());
      expect(ids(second.acked)).toEqual(events.map((e) => e.id).sort());
    });

    it('removes its consumer on stop: nothing published later waits for it', async () => {
      const type = newType();
      const consumer = unique('live');
      const live = await record(transport, consumer, type, undefined, LIVE);
      await transport.publish(testEvent(type, 'a', '1'));
      await waitFor('the event', () => live.acked.length === 1);
      await live.subscription.stop();
      await transport.publish(testEvent(type, 'a', '2'));
      // A consumer that survived its subscription would now count that event (see `pending`).
      expect(await transport.pending(consumer)).toBe(0);
      // And the name is free again: a new live subscription starts from scratch.
      const again = await record(transport, consumer, type, undefined, LIVE);
      const next = testEvent(type, 'a', '3');
      await transport.publish(next);
      await waitFor('the next event', () => again.acked.length === 1);
      await again.subscription.stop();
      expect(again.acked.map((d) => d.envelope.id)).toEqual([next.id]);
    });

    it('is removed by the broker once its process vanished without stopping', async () => {
      const type = newType();
      const consumer = unique('live');
      const doomed = await connect({ liveInactiveMs: 5000 });
      await doomed.subscribe(consumer, [subjectFor(type)], async () => undefined, LIVE);
      await doomed.close(); // the crash: nothing stopped, nothing removed
      await transport.publish(testEvent(type, 'a', 'after the crash'));
      expect(await transport.pending(consumer)).toBe(1);
      await waitFor(
        'the consumer removed',
        async () => (await transport.pending(consumer)) === 0,
        45_000,
      );
    }, 60_000);

    it('is made again when its process comes back after being cut off for longer than that', async () => {
      const type = newType();
      const consumer = unique('live');
      const proxy = new TcpProxy(await freePort(), subject.target);
      await proxy.start();
      try {
        const cutOff = await connect({ liveInactiveMs: 3000, via: proxy.address });
        const live = await record(cutOff, consumer, type, undefined, LIVE);
        await transport.publish(testEvent(type, 'a', 'before'));
        await waitFor('the first event', () => live.acked.length === 1);

        await proxy.stop();
        const lost = testEvent(type, 'a', 'lost');
        await transport.publish(lost);
        await waitFor(
          'the consumer removed while cut off',
          async () => (await transport.pending(consumer)) === 0,
          45_000,
        );

        await proxy.start();
        // Events published until the consumer is made again are not its own: publish until one
        // arrives.
        const published: string[] = [];
        await waitFor(
          'an event after the reconnection',
          async () => {
            const event = testEvent(type, 'a', 'after');
            published.push(event.id);
            await transport.publish(event);
            await new Promise((resolve) => setTimeout(resolve, 250));
            return live.acked.some((d) => published.includes(d.envelope.id));
          },
          45_000,
        );
        expect(live.acked.map((d) => d.envelope.id)).not.toContain(lost.id);
        await live.subscription.stop();
        expect(await transport.pending(consumer)).toBe(0);
      } finally {
        await proxy.stop();
      }
    }, 120_000);
  });
}
