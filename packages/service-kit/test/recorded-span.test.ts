import { SpanKind, SpanStatusCode, TraceFlags, type Span } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';
import { RecordedSpan, SPAN_COUNT_LIMIT, toClock, type SpanSink } from '../src/recorded-span';

/**
 * `RecordedSpan` stands in for the SDK's span (see recorded-span.ts for why): each test does the
 * same to a span of each and expects the same span to come out.
 */
function both(script: (span: Span) => void) {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
  });
  const sdkSpan = provider.getTracer('test').startSpan('first name', { kind: SpanKind.CLIENT });
  script(sdkSpan);
  const theirs = memory.getFinishedSpans()[0];

  const ended: RecordedSpan[] = [];
  const sink: SpanSink = { onEnd: (span) => ended.push(span), shutdown: () => Promise.resolve() };
  const ours = new RecordedSpan(
    'first name',
    SpanKind.CLIENT,
    { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 },
    undefined,
    false,
    {},
    [sink],
  );
  script(ours);
  return { theirs, ours, ended, sdkSpan };
}

/** What a sink reads of a span, times left out. */
function seen(span: ReadableSpan | RecordedSpan) {
  return {
    name: span.name,
    kind: span.kind,
    attributes: span.attributes,
    droppedAttributesCount: span.droppedAttributesCount,
    status: span.status,
    events: span.events.map(({ name, attributes, droppedAttributesCount }) => ({
      name,
      attributes,
      droppedAttributesCount: droppedAttributesCount ?? 0,
    })),
    droppedEventsCount: span.droppedEventsCount,
    links: span.links.map(({ context, attributes, droppedAttributesCount }) => ({
      context,
      attributes,
      droppedAttributesCount: droppedAttributesCount ?? 0,
    })),
    droppedLinksCount: span.droppedLinksCount,
  };
}

describe('RecordedSpan, against the SDK’s span', () => {
  it('keeps valid attributes, skips invalid ones, and ignores everything after end()', () => {
    const { theirs, ours, ended } = both((span) => {
      span.setAttribute('text', 'a');
      span.setAttributes({
        count: 3,
        ok: true,
        list: ['a', 'b'],
        withNulls: [1, null, 2] as number[],
        missing: undefined,
        '': 'no key',
      });
      span.setAttribute('text', 'b'); // replaces, not counted twice
      span.updateName('second name');
      span.end();
      span.setAttribute('late', 1);
      span.updateName('late name');
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.addEvent('late');
      span.end();
    });
    expect(theirs).toBeDefined();
    expect(seen(ours)).toEqual(seen(theirs!));
    expect(ours.attributes).toEqual({
      text: 'b',
      count: 3,
      ok: true,
      list: ['a', 'b'],
      withNulls: [1, null, 2],
    });
    expect(ours.name).toBe('second name');
    // Ended once: the sink was told once, and it is no longer recording.
    expect(ended).toEqual([ours]);
    expect(ours.isRecording()).toBe(false);
    expect(ours.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('keeps only the attribute values of the API’s types (where the SDK now keeps any value)', () => {
    const { ours } = both((span) => {
      span.setAttributes({
        mixed: [1, 'a'] as unknown,
        object: { a: 1 },
        nothing: null,
        bytes: new Uint8Array([1]),
        kept: 'yes',
      });
      span.end();
    });
    // Nothing here sets the others, and the exporter writes only these (otlp-export.ts).
    expect(ours.attributes).toEqual({ kept: 'yes' });
  });

  it(`keeps at most ${SPAN_COUNT_LIMIT} attributes, events and links, and counts the rest`, () => {
    const { theirs, ours } = both((span) => {
      for (let i = 0; i < SPAN_COUNT_LIMIT + 5; i++) span.setAttribute(`key${i}`, i);
      span.setAttribute('key0', 'replaced at the limit');
      for (let i = 0; i < SPAN_COUNT_LIMIT + 3; i++) span.addEvent(`event${i}`, { i });
      for (let i = 0; i < SPAN_COUNT_LIMIT + 2; i++) {
        span.addLink({
          context: {
            traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
            spanId: `${i}`.padStart(16, 'a'),
            traceFlags: TraceFlags.SAMPLED,
          },
          attributes: { i },
        });
      }
      span.end();
    });
    expect(seen(ours)).toEqual(seen(theirs!));
    expect(ours.droppedAttributesCount).toBe(5);
    expect(ours.events[0]!.name).toBe('event3'); // the oldest made room
    expect(ours.droppedLinksCount).toBe(2);
  });

  it('keeps an OK status, ignores UNSET, and keeps only a string message', () => {
    for (const statuses of [
      [{ code: SpanStatusCode.ERROR, message: 'first' }, { code: SpanStatusCode.UNSET }],
      [{ code: SpanStatusCode.OK }, { code: SpanStatusCode.ERROR, message: 'too late' }],
      [{ code: SpanStatusCode.ERROR, message: 42 as never }],
      [{ code: SpanStatusCode.OK, message: 'ok has none' }],
      [{ code: SpanStatusCode.ERROR }, { code: SpanStatusCode.ERROR, message: 'second' }],
    ]) {
      const { theirs, ours } = both((span) => {
        for (const status of statuses) span.setStatus(status);
        span.end();
      });
      expect(ours.status).toEqual(theirs!.status);
    }
  });

  it('records an exception as the semantic conventions’ event', () => {
    const error = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    const { theirs, ours } = both((span) => {
      span.recordException(error);
      span.recordException('just a message');
      span.recordException({ name: 'NamedOnly' });
      span.recordException({} as Error); // nothing to say: no event
      span.end();
    });
    expect(seen(ours)).toEqual(seen(theirs!));
    expect(ours.events.map((event) => event.attributes['exception.type'])).toEqual([
      'ECONNRESET',
      undefined,
      'NamedOnly',
    ]);
  });

  it('reads event and end times given as a Date, Unix milliseconds, an HrTime or its own clock', () => {
    const at = Date.now() - 10;
    const clock = toClock(at);
    expect(toClock(new Date(at))).toBeCloseTo(clock, 6);
    expect(toClock([Math.floor(at / 1000), (at % 1000) * 1e6])).toBeCloseTo(clock, 3);
    expect(toClock(clock)).toBe(clock);
    const { ours } = both((span) => {
      span.addEvent('at a time', at);
      span.addEvent('with attributes and a time', { a: 1 }, new Date(at));
      span.end(performance.now() + 5);
    });
    expect(ours.events.map((event) => event.time)).toEqual([clock, clock]);
    expect(ours.events[1]!.attributes).toEqual({ a: 1 });
    // An end before the start is taken as the start.
    const { ours: backwards } = both((span) => span.end(0));
    expect(backwards.durationMs).toBe(0);
  });

  it('leaves the attributes it started with alone: they are copied before the first change', () => {
    const constant = Object.freeze({ 'db.system.name': 'postgresql' });
    const span = new RecordedSpan(
      'SELECT 1',
      SpanKind.CLIENT,
      { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 },
      'a7ad6b7169203331',
      false,
      constant,
      [],
    );
    span.setAttribute('db.statement.name', 'one');
    expect(constant).toEqual({ 'db.system.name': 'postgresql' });
    expect(span.attributes).toEqual({
      'db.system.name': 'postgresql',
      'db.statement.name': 'one',
    });
    expect(span.isLocalRoot).toBe(false);
  });
});
