import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode, TraceFlags, trace, ROOT_CONTEXT } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';
import { createLogger } from '../src/logger';
import { OtlpJsonExport, encodeSpan, nanosText, type OtlpExportOptions } from '../src/otlp-export';
import { eventually } from '../src/testing';

const logger = createLogger({ name: 'test', level: 'silent', pretty: false });
const SCOPE = { name: '@repo/service-kit', version: '1.0.0' };

/** Spans made by the SDK itself, of every shape this project makes (and some it does not). */
async function sdkSpans(): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'gateway' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
  });
  const tracer = provider.getTracer(SCOPE.name, SCOPE.version);
  const caller = trace.setSpan(
    ROOT_CONTEXT,
    trace.wrapSpanContext({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState('vendor=a"b,other=1'),
    }),
  );
  const server = tracer.startSpan('GET /v1/products/:id', { kind: SpanKind.SERVER }, caller);
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
  const child = tracer.startSpan(
    'SELECT products',
    { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql' } },
    trace.setSpan(caller, server),
  );
  child.addEvent('retry', { 'rpc.grpc.status_code': 14, backoff: 12.5 });
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'connection "reset"' });
  child.end();
  const linked = tracer.startSpan('process order.v1.OrderPlaced', {
    kind: SpanKind.CONSUMER,
    links: [{ context: server.spanContext(), attributes: { reason: 'caused by' } }],
  });
  linked.setStatus({ code: SpanStatusCode.OK });
  linked.end();
  server.end();
  await provider.forceFlush();
  return memory.getFinishedSpans();
}

describe('OTLP/JSON export', () => {
  it('encodes each span exactly as OpenTelemetry’s own JSON serializer does', async () => {
    const spans = await sdkSpans();
    expect(spans).toHaveLength(3);
    const theirs = JSON.parse(
      new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)),
    ) as { resourceSpans: [{ scopeSpans: [{ spans: unknown[] }] }] };
    const expected = theirs.resourceSpans[0].scopeSpans[0].spans;
    expect(spans.map((span) => JSON.parse(encodeSpan(span)) as unknown)).toEqual(expected);
  });

  it('writes nanoseconds since the epoch without losing digits', () => {
    expect(nanosText([1_764_000_000, 5])).toBe('1764000000000000005');
    expect(nanosText([1_764_000_000, 123_456_789])).toBe('1764000000123456789');
    expect(nanosText([0, 42])).toBe('42');
  });

  describe('to a collector', () => {
    let server: Server;
    let url: string;
    let status = 200;
    const bodies: { resourceSpans: unknown[] }[] = [];
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
          bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as never);
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
      status = 200;
      holding = false;
    });

    /** An exporter of the gateway's spans to this test's collector. */
    const exporterTo = (options: Partial<OtlpExportOptions>) =>
      new OtlpJsonExport({ url, serviceName: 'gateway', scope: SCOPE, logger, ...options });

    it('sends sampled spans in batches of up to maxBatchBytes, under the service’s resource and scope, and nothing unsampled', async () => {
      const spans = await sdkSpans();
      const exporter = exporterTo({
        // The first two spans make a batch.
        maxBatchBytes: encodeSpan(spans[0]!).length + 1,
        delayMs: 60_000,
      });
      const unsampled = {
        ...spans[0]!,
        spanContext: () => ({ ...spans[0]!.spanContext(), traceFlags: TraceFlags.NONE }),
      } as ReadableSpan;
      exporter.onEnd(unsampled);
      for (const span of spans) exporter.onEnd(span);
      // Two make a batch at once; the third waits for its delay, or a flush.
      await exporter.forceFlush();
      await exporter.shutdown();
      expect(bodies).toHaveLength(2);
      const theirs = JSON.parse(
        new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)),
      ) as {
        resourceSpans: [{ resource: unknown; scopeSpans: [{ scope: unknown; spans: unknown[] }] }];
      };
      const [resourceSpans] = theirs.resourceSpans;
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

    it('drops a batch the collector refuses, warns once, and goes on when it answers again', async () => {
      const warnings: string[] = [];
      const spans = await sdkSpans();
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

    it('keeps 8 exports under way while the collector is slow to answer, then sends what waited', async () => {
      // A process with long event loop turns reads its exports' answers late; with 2 under way
      // (the first default), `pnpm run tracing-cost` at 100% dropped three spans in four.
      const spans = [...(await sdkSpans()), ...(await sdkSpans()), ...(await sdkSpans())];
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
      const spans = await sdkSpans();
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
