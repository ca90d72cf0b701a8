import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { SpanKind, SpanStatusCode, TraceFlags, type HrTime } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { createLogger } from '../src/logger';
import { OtlpJsonExport, encodeSpan, quote, type OtlpExportOptions } from '../src/otlp-export';
import { RecordedSpan, unixNanosText, type SpanSink } from '../src/recorded-span';
import { eventually } from '../src/testing';

const logger = createLogger({ name: 'test', level: 'silent', pretty: false });
const SCOPE = { name: '@repo/service-kit', version: '1.0.0' };
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

/** Ended spans of every shape this project makes (and some it does not), in the order they end. */
function recordedSpans(traceFlags: number = TraceFlags.SAMPLED): RecordedSpan[] {
  const ended: RecordedSpan[] = [];
  const collect: SpanSink[] = [
    { onEnd: (span) => ended.push(span), shutdown: () => Promise.resolve() },
  ];
  // A call from another process, with a tracestate that JSON has to escape.
  const server = new RecordedSpan(
    'GET /v1/products/:id',
    SpanKind.SERVER,
    {
      traceId: TRACE_ID,
      spanId: '00f067aa0ba902b7',
      traceFlags,
      traceState: new TraceState('vendor=a"b,other=1'),
    },
    'b7ad6b7169203331',
    true,
    {},
    collect,
  );
  server.setAttributes({
    'http.request.method': 'GET',
    'http.response.status_code': 200,
    'url.path': '/v1/products/"quoted"\n\u2028é',
    ratio: 0.25,
    huge: Number.NaN,
    cached: true,
    'list.strings': ['a', 'b'],
    'list.numbers': [1, 2.5],
  });
  const child = new RecordedSpan(
    'SELECT products',
    SpanKind.CLIENT,
    { traceId: TRACE_ID, spanId: '53995c3f42cd8ad8', traceFlags },
    '00f067aa0ba902b7',
    false,
    { 'db.system.name': 'postgresql' },
    collect,
  );
  child.addEvent('retry', { 'rpc.grpc.status_code': 14, backoff: 12.5 });
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'connection "reset"' });
  child.end();
  const linked = new RecordedSpan(
    'process order.v1.OrderPlaced',
    SpanKind.CONSUMER,
    { traceId: 'a3ce929d0e0e47364bf92f3577b34da6', spanId: '1ad7e6d4f7e3f2a1', traceFlags },
    undefined,
    false,
    {},
    collect,
  );
  linked.addLink({ context: server.spanContext(), attributes: { reason: 'caused by' } });
  linked.setStatus({ code: SpanStatusCode.OK });
  linked.end();
  server.end();
  return ended;
}

/** A time on the spans' clock as an HrTime, for OpenTelemetry's serializer. */
function hrTime(clockMs: number): HrTime {
  const nanos = BigInt(unixNanosText(clockMs));
  return [Number(nanos / 1_000_000_000n), Number(nanos % 1_000_000_000n)];
}

const RESOURCE = resourceFromAttributes({ 'service.name': 'gateway' });

/** `span` as the SDK's ReadableSpan, which OpenTelemetry's own serializer takes. */
function asReadableSpan(span: RecordedSpan): ReadableSpan {
  const context = span.spanContext();
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => context,
    parentSpanContext:
      span.parentSpanId === undefined
        ? undefined
        : {
            traceId: context.traceId,
            spanId: span.parentSpanId,
            traceFlags: context.traceFlags,
            isRemote: span.parentIsRemote,
          },
    startTime: hrTime(span.startTime),
    endTime: hrTime(span.endTime),
    duration: [0, Math.round(span.durationMs * 1e6)],
    status: span.status,
    attributes: span.attributes,
    links: span.links,
    events: span.events.map((event) => ({ ...event, time: hrTime(event.time) })),
    ended: true,
    resource: RESOURCE,
    instrumentationScope: SCOPE,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

/** What OpenTelemetry's own serializer makes of `spans`. */
function theirJson(spans: RecordedSpan[]) {
  return JSON.parse(
    new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans.map(asReadableSpan))),
  ) as {
    resourceSpans: [{ resource: unknown; scopeSpans: [{ scope: unknown; spans: unknown[] }] }];
  };
}

describe('OTLP/JSON export', () => {
  it('encodes each span exactly as OpenTelemetry’s own JSON serializer does', () => {
    const spans = recordedSpans();
    expect(spans).toHaveLength(3);
    const expected = theirJson(spans).resourceSpans[0].scopeSpans[0].spans;
    expect(spans.map((span) => JSON.parse(encodeSpan(span)) as unknown)).toEqual(expected);
  });

  it('quotes text as JSON.stringify does', () => {
    const texts = [
      '',
      'plain ascii / route',
      'quote " and backslash \\',
      'control \u0000 \u001f \n \t',
      'é \u2028 \u2029 €',
      'pair \ud83d\ude00',
      'lone \ud83d high',
      'lone \ude00 low',
      '\u007f del',
    ];
    for (const text of texts) expect(quote(text)).toBe(JSON.stringify(text));
  });

  it('encodes a span’s shared attributes once, and a changed copy afresh', () => {
    const statement = Object.freeze({
      'db.system.name': 'postgresql',
      'db.query.text': 'SELECT 1',
    });
    const spanWith = (change: boolean) => {
      const span = new RecordedSpan(
        'SELECT',
        SpanKind.CLIENT,
        { traceId: TRACE_ID, spanId: '53995c3f42cd8ad8', traceFlags: 1 },
        undefined,
        false,
        statement,
        [],
      );
      if (change) span.setAttribute('db.response.status_code', '57014');
      span.end();
      return span;
    };
    const attributesOf = (span: RecordedSpan) =>
      (JSON.parse(encodeSpan(span)) as { attributes: { key: string }[] }).attributes.map(
        (attribute) => attribute.key,
      );
    expect(attributesOf(spanWith(false))).toEqual(['db.system.name', 'db.query.text']);
    expect(attributesOf(spanWith(true))).toEqual([
      'db.system.name',
      'db.query.text',
      'db.response.status_code',
    ]);
    expect(attributesOf(spanWith(false))).toEqual(['db.system.name', 'db.query.text']);
  });

  it('writes nanoseconds since the epoch without losing digits', () => {
    const origin = BigInt(Math.round(performance.timeOrigin * 1e6));
    for (const clockMs of [0, 0.000001, 1.5, 999.9999996, 1_234_567.891234]) {
      const written = BigInt(unixNanosText(clockMs));
      // Within a microsecond: the Unix time is a double of ~1.8e12 ms, good to a quarter of one.
      const error = written - origin - BigInt(Math.round(clockMs * 1e6));
      expect(error >= -1000n && error <= 1000n).toBe(true);
    }
    // Digits are never lost at the boundary of a millisecond.
    expect(unixNanosText(1)).toMatch(/^\d{19}$/);
  });

  describe('to a collector', () => {
    let server: Server;
    let url: string;
    let status = 200;
    const bodies: { resourceSpans: unknown[] }[] = [];
    /** Each export request's headers and body size on the wire, in the order they came. */
    const received: { headers: IncomingHttpHeaders; bytes: number }[] = [];
    /** While true, answers wait in `held` until a test sends them (a collector slow to answer). */
    let holding = false;
    const held: (() => void)[] = [];

    beforeAll(async () => {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          expect(req.method).toBe('POST');
          expect(req.url).toBe('/v1/traces');
          expect(req.headers['content-type']).toBe('application/json');
          const body = Buffer.concat(chunks);
          received.push({ headers: req.headers, bytes: body.length });
          const json = req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
          bodies.push(JSON.parse(json.toString('utf8')) as never);
          const answer = () =>
            res.writeHead(status, { 'Content-Type': 'application/json' }).end('{}');
          if (holding) held.push(answer);
          else answer();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
    });

    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    beforeEach(() => {
      bodies.length = 0;
      received.length = 0;
      status = 200;
      holding = false;
    });

    /** An exporter of the gateway's spans to this test's collector. */
    const exporterTo = (options: Partial<OtlpExportOptions>) =>
      new OtlpJsonExport({ url, serviceName: 'gateway', scope: SCOPE, logger, ...options });

    it('sends sampled spans in batches of up to maxBatchBytes, under the service’s resource and scope, and nothing unsampled', async () => {
      const spans = recordedSpans();
      const exporter = exporterTo({
        // The first two spans make a batch.
        maxBatchBytes: encodeSpan(spans[0]!).length + 1,
        delayMs: 60_000,
      });
      // Recorded for the slow-request log, not sampled: not exported.
      exporter.onEnd(recordedSpans(TraceFlags.NONE)[0]!);
      for (const span of spans) exporter.onEnd(span);
      // Two make a batch at once; the third waits for its delay, or a flush.
      await exporter.forceFlush();
      await exporter.shutdown();
      expect(bodies).toHaveLength(2);
      const [resourceSpans] = theirJson(spans).resourceSpans;
      expect(bodies).toEqual([
        {
          resourceSpans: [
            {
              resource: {
                attributes: [{ key: 'service.name', value: { stringValue: 'gateway' } }],
              },
              scopeSpans: [{ scope: SCOPE, spans: resourceSpans.scopeSpans[0].spans.slice(0, 2) }],
            },
          ],
        },
        {
          resourceSpans: [
            {
              resource: {
                attributes: [{ key: 'service.name', value: { stringValue: 'gateway' } }],
              },
              scopeSpans: [{ scope: SCOPE, spans: resourceSpans.scopeSpans[0].spans.slice(2) }],
            },
          ],
        },
      ]);
    });

    it('sends the configured headers, and gzips the body when told to (the same spans arrive)', async () => {
      const spans = recordedSpans();
      for (const compression of ['none', 'gzip'] as const) {
        const exporter = exporterTo({
          compression,
          // A header of the exporter's own is not the configuration's to change.
          headers: { 'api-key': 'abc==', 'x-tenant': 'a,b', 'content-type': 'text/plain' },
        });
        for (const span of spans) exporter.onEnd(span);
        await exporter.shutdown();
      }
      expect(received).toHaveLength(2);
      for (const { headers } of received) {
        expect(headers).toMatchObject({
          'api-key': 'abc==',
          'x-tenant': 'a,b',
          'content-type': 'application/json',
        });
      }
      expect(received[0]!.headers['content-encoding']).toBeUndefined();
      expect(received[1]!.headers['content-encoding']).toBe('gzip');
      expect(received[1]!.bytes).toBeLessThan(received[0]!.bytes / 2);
      expect(bodies[1]).toEqual(bodies[0]);
    });

    it('sends a span larger than a batch’s buffer whole (the buffer grows for it)', async () => {
      const [first, second] = recordedSpans();
      // 120 KB of UTF-8 (three bytes a character): more than a 1 KiB batch and its 16 KiB slack.
      const huge = new RecordedSpan(
        'huge',
        SpanKind.INTERNAL,
        { traceId: TRACE_ID, spanId: '1ad7e6d4f7e3f2a2', traceFlags: TraceFlags.SAMPLED },
        undefined,
        false,
        { text: '€'.repeat(40_000) },
        [],
      );
      huge.end();
      const exporter = exporterTo({ maxBatchBytes: 1024, delayMs: 60_000 });
      for (const span of [first!, huge, second!]) exporter.onEnd(span);
      await exporter.shutdown();
      const sent = bodies.flatMap(
        (body) =>
          (body as { resourceSpans: [{ scopeSpans: [{ spans: unknown[] }] }] }).resourceSpans[0]
            .scopeSpans[0].spans,
      );
      expect(sent).toEqual([first!, huge, second!].map((span) => JSON.parse(encodeSpan(span))));
    });

    it('drops a batch the collector refuses, warns once, and goes on when it answers again', async () => {
      const warnings: string[] = [];
      const spans = recordedSpans();
      const exporter = exporterTo({
        logger: {
          ...logger,
          warn: (_: unknown, message: string) => warnings.push(message),
          info: () => undefined,
        } as never,
        maxBatchBytes: 1,
      });
      status = 503;
      exporter.onEnd(spans[0]!);
      exporter.onEnd(spans[1]!);
      await exporter.forceFlush();
      expect(exporter.dropped).toBe(2);
      expect(warnings).toEqual([
        'cannot export traces: spans are dropped until the collector answers',
      ]);
      status = 200;
      exporter.onEnd(spans[2]!);
      await exporter.shutdown();
      expect(bodies).toHaveLength(3);
      expect(exporter.dropped).toBe(2);
    });

    it('abandons an export the collector has not answered within timeoutMs, and drops its spans', async () => {
      const warnings: { err: Error; message: string }[] = [];
      const spans = recordedSpans();
      const exporter = exporterTo({
        logger: {
          ...logger,
          warn: (fields: { err: Error }, message: string) =>
            warnings.push({ err: fields.err, message }),
        } as never,
        timeoutMs: 200,
      });
      holding = true;
      for (const span of spans) exporter.onEnd(span);
      await exporter.forceFlush();
      expect(exporter.dropped).toBe(spans.length);
      expect(warnings).toEqual([
        {
          err: new Error('no answer within 200 ms'),
          message: 'cannot export traces: spans are dropped until the collector answers',
        },
      ]);
      held.splice(0).forEach((answer) => answer());
      await exporter.shutdown();
    });

    it('keeps 8 exports under way while the collector is slow to answer, then sends what waited', async () => {
      // A process with long event loop turns reads its exports' answers late; with 2 under way
      // (the first default), `pnpm run tracing-cost` at 100% dropped three spans in four.
      const spans = [...recordedSpans(), ...recordedSpans(), ...recordedSpans()];
      const exporter = exporterTo({ maxBatchBytes: 1 }); // a span a batch
      holding = true;
      for (const span of spans.slice(0, 9)) exporter.onEnd(span);
      await eventually(() => Promise.resolve(held.length >= 8), true);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(held).toHaveLength(8); // the ninth waits for a free slot
      holding = false;
      held.splice(0).forEach((answer) => answer());
      await exporter.shutdown();
      expect(bodies).toHaveLength(9);
      expect(exporter.dropped).toBe(0);
    });

    it('keeps at most maxQueued spans waiting, counts the rest as dropped, and warns once', async () => {
      const warnings: string[] = [];
      const spans = recordedSpans();
      const exporter = exporterTo({
        logger: {
          ...logger,
          warn: (_: unknown, message: string) => warnings.push(message),
        } as never,
        maxBatchBytes: 1_000_000,
        maxQueued: 2,
        delayMs: 60_000,
      });
      for (const span of [...spans, ...spans]) exporter.onEnd(span);
      expect(exporter.dropped).toBe(4);
      expect(warnings).toEqual([
        'spans are made faster than the collector takes them: spans are dropped',
      ]);
      await exporter.shutdown();
      expect(bodies).toHaveLength(1);
    });
  });
});
