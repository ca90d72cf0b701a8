import { Metadata } from '@grpc/grpc-js';
import {
  ROOT_CONTEXT,
  defaultTextMapGetter,
  isValidSpanId,
  isValidTraceId,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { runWithContext } from '../src/context';
import { createLogger } from '../src/logger';
import { RecordedSpan } from '../src/recorded-span';
import {
  SlowRequestLog,
  SpanKind,
  currentTraceHeaders,
  injectTraceContext,
  otlpExportOptions,
  setupTracing,
  startChildSpan,
  startServerSpan,
  withChildSpan,
} from '../src/tracing';

/** A logger whose JSON lines are kept, as the apps' loggers are made. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    name: 'test',
    level: 'info',
    pretty: false,
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN_ID = 'b7ad6b7169203331';
const MS = String.raw`\d+\.\d ms`;

describe('tracing', () => {
  it('does nothing before it is set up (tracing off): no spans, nothing propagated', () => {
    expect(startServerSpan('GET /x', { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01` })).toBe(
      undefined,
    );
    const metadata = new Metadata();
    injectTraceContext(undefined, metadata);
    expect(metadata.get('traceparent')).toEqual([]);
  });

  it("continues the caller's trace, puts its ids on log lines and logs a slow request's span tree", async () => {
    const { logger, lines } = capturingLogger();
    // Nothing sampled (ratio 0), but with the slow-request log on every span is recorded.
    const tracing = setupTracing(
      { OTEL_SERVICE_NAME: 'test', OTEL_TRACES_SAMPLER_ARG: 0, TRACE_SLOW_MS: 0 },
      logger,
    );
    const served = startServerSpan('GET /x', {
      traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-00`,
    })!;
    expect(served.spanContext().traceId).toBe(TRACE_ID);
    const outgoing = new Metadata();
    await runWithContext({ requestId: 'r-1', trace: served }, async () => {
      logger.info('serving');
      await withChildSpan(
        'transaction',
        SpanKind.CLIENT,
        { 'db.system.name': 'postgresql' },
        () => {
          startChildSpan('SELECT users', SpanKind.CLIENT, {
            'db.system.name': 'postgresql',
          })!.end();
          return Promise.resolve();
        },
      );
      const call = startChildSpan('user.v1.UserService/GetUser', SpanKind.CLIENT, {})!;
      injectTraceContext(call, outgoing);
      call.end();
    });
    served.end();
    await tracing.shutdown();

    const serving = lines.find((line) => line.msg === 'serving')!;
    expect(serving).toMatchObject({
      requestId: 'r-1',
      trace_id: TRACE_ID,
      span_id: served.spanContext().spanId,
    });
    // The next hop gets the trace, unsampled as the caller decided.
    expect(String(outgoing.get('traceparent')[0])).toMatch(
      new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`),
    );
    const slow = lines.filter((line) => String(line.msg).startsWith('slow: '));
    expect(slow).toHaveLength(1);
    expect(slow[0]!.trace_id).toBe(TRACE_ID);
    expect(slow[0]!.msg).toMatch(
      new RegExp(
        `^slow: GET /x ${MS} > \\[pg transaction ${MS} > pg SELECT users ${MS}, user.v1.UserService/GetUser ${MS}\\]$`,
      ),
    );
  });

  it('records nothing for an unsampled caller, samples new traces at the ratio, and follows a sampled caller', async () => {
    const { logger } = capturingLogger();
    // The endpoint is a closed port: what is exported (one span, below) is lost, as it may be.
    const unsampled = setupTracing(
      {
        OTEL_SERVICE_NAME: 'test',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_TRACES_SAMPLER_ARG: 0,
      },
      logger,
    );
    const fromCaller = startServerSpan('GET /x', {
      traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-00`,
    })!;
    // Served in the caller's own context: no span of its own, nothing below recorded either.
    expect(fromCaller.isRecording()).toBe(false);
    expect(fromCaller.spanContext()).toMatchObject({
      traceId: TRACE_ID,
      spanId: CALLER_SPAN_ID,
    });
    expect(startChildSpan('SELECT users', SpanKind.CLIENT, {}, fromCaller)).toBeUndefined();
    // A new trace at ratio 0: ids for the logs and the next hop, nothing recorded.
    const fresh = startServerSpan('GET /x', {})!;
    expect(fresh.isRecording()).toBe(false);
    expect(fresh.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(fresh.spanContext().traceId).not.toBe(TRACE_ID);
    // A sampled caller is followed whatever the ratio.
    const sampledCaller = startServerSpan('GET /x', {
      traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`,
    })!;
    expect(sampledCaller.isRecording()).toBe(true);
    sampledCaller.end();
    await unsampled.shutdown().catch(() => undefined);

    const everything = setupTracing(
      {
        OTEL_SERVICE_NAME: 'test',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_TRACES_SAMPLER_ARG: 1,
      },
      logger,
    );
    const root = startServerSpan('GET /x', {})!;
    expect(root.isRecording()).toBe(true);
    expect(root.spanContext().traceFlags).toBe(1);
    await everything.shutdown().catch(() => undefined);
  });

  it("hands a request's trace context to an event, whose handling continues the trace", async () => {
    const { logger } = capturingLogger();
    expect(currentTraceHeaders()).toEqual({});
    const tracing = setupTracing(
      { OTEL_SERVICE_NAME: 'test', OTEL_TRACES_SAMPLER_ARG: 1, TRACE_SLOW_MS: 60_000 },
      logger,
    );
    const request = startServerSpan('POST /v1/orders', {})!;
    const headers = runWithContext({ requestId: 'r-2', trace: request }, () =>
      currentTraceHeaders(),
    );
    const { traceId, spanId } = request.spanContext();
    expect(headers).toEqual({ traceparent: `00-${traceId}-${spanId}-01` });
    // Later, elsewhere: the consumer's span is a child of the request that wrote the event.
    const handling = startServerSpan('order.placed process', headers, SpanKind.CONSUMER)!;
    expect(handling.isRecording()).toBe(true);
    expect(handling.spanContext().traceId).toBe(traceId);
    expect(handling).toBeInstanceOf(RecordedSpan);
    expect((handling as RecordedSpan).parentSpanId).toBe(spanId);
    expect((handling as RecordedSpan).kind).toBe(SpanKind.CONSUMER);
    await tracing.shutdown();
  });

  it("reads a caller's trace context as OpenTelemetry's W3C propagator does, and starts new traces on valid, distinct ids", async () => {
    const { logger } = capturingLogger();
    const tracing = setupTracing(
      {
        OTEL_SERVICE_NAME: 'test',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_TRACES_SAMPLER_ARG: 0,
      },
      logger,
    );
    const propagator = new W3CTraceContextPropagator();
    const traceparents = [
      `00-${TRACE_ID}-${CALLER_SPAN_ID}-00`,
      ` 00-${TRACE_ID}-${CALLER_SPAN_ID}-00 `,
      `01-${TRACE_ID}-${CALLER_SPAN_ID}-00-future`,
      `00-${TRACE_ID}-${CALLER_SPAN_ID}-00-extra`,
      `00-${'0'.repeat(32)}-${CALLER_SPAN_ID}-00`,
      `00-${TRACE_ID.toUpperCase()}-${CALLER_SPAN_ID}-00`,
      `ff-${TRACE_ID}-${CALLER_SPAN_ID}-00`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `00-${TRACE_ID.slice(1)}-${CALLER_SPAN_ID}-01`,
      `00-${TRACE_ID}-${CALLER_SPAN_ID}-fe`, // flags other than sampled, unsampled
      `00-${TRACE_ID}-${CALLER_SPAN_ID}-0g`,
      `00_${TRACE_ID}-${CALLER_SPAN_ID}-01`,
      `cc-${TRACE_ID}-${CALLER_SPAN_ID}-00-what-the-future-will-add`,
      '',
    ];
    for (const traceparent of traceparents) {
      for (const tracestate of [undefined, 'vendor=a,other=b']) {
        const headers = { traceparent, ...(tracestate ? { tracestate } : {}) };
        const metadata = new Metadata();
        metadata.set('traceparent', traceparent);
        if (tracestate) metadata.set('tracestate', tracestate);
        const expected = trace.getSpanContext(
          propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter),
        );
        for (const carrier of [headers, metadata]) {
          const served = startServerSpan('GET /x', carrier)!;
          const got = served.spanContext();
          if (expected) {
            expect(got).toEqual(expected);
            // Passed on as it came, tracestate included.
            expect(runWithContext({ requestId: 'r', trace: served }, currentTraceHeaders)).toEqual({
              traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-${expected.traceFlags.toString(16).padStart(2, '0')}`,
              ...(tracestate ? { tracestate } : {}),
            });
          } else {
            // Malformed or absent: a new trace.
            expect(got.traceId).not.toBe(TRACE_ID);
          }
        }
      }
    }
    // New traces: valid ids (32 and 16 hex digits, not all zero), never the same twice.
    const ids = Array.from({ length: 2_000 }, () => startServerSpan('GET /x', {})!.spanContext());
    for (const { traceId, spanId } of ids) {
      expect(isValidTraceId(traceId) && isValidSpanId(spanId)).toBe(true);
    }
    expect(new Set(ids.map(({ traceId }) => traceId)).size).toBe(ids.length);
    expect(new Set(ids.map(({ spanId }) => spanId)).size).toBe(ids.length);
    await tracing.shutdown().catch(() => undefined);
  });

  it('exports where the OTLP settings say, a traces-only setting winning over the general one', () => {
    const base = { OTEL_SERVICE_NAME: 'order', OTEL_TRACES_SAMPLER_ARG: 0.1 };
    expect(otlpExportOptions(base)).toBeUndefined();
    expect(
      otlpExportOptions({
        ...base,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
        OTEL_EXPORTER_OTLP_HEADERS: { 'api-key': 'a', 'x-tenant': 't' },
      }),
    ).toMatchObject({
      url: 'http://collector:4318/v1/traces',
      serviceName: 'order',
      headers: { 'api-key': 'a', 'x-tenant': 't' },
      timeoutMs: undefined,
      compression: undefined,
    });
    expect(
      otlpExportOptions({
        ...base,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example.com/otlp/traces',
        OTEL_EXPORTER_OTLP_HEADERS: { 'api-key': 'a', 'x-tenant': 't' },
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: { 'api-key': 'b' },
        OTEL_EXPORTER_OTLP_TIMEOUT: 5_000,
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: 2_000,
        OTEL_EXPORTER_OTLP_COMPRESSION: 'none',
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
      }),
    ).toMatchObject({
      url: 'https://traces.example.com/otlp/traces',
      headers: { 'api-key': 'b', 'x-tenant': 't' },
      timeoutMs: 2_000,
      compression: 'gzip',
    });
  });

  it('logs nothing for a request faster than TRACE_SLOW_MS', () => {
    const { logger, lines } = capturingLogger();
    const root = new RecordedSpan(
      'GET /fast',
      SpanKind.SERVER,
      { traceId: TRACE_ID, spanId: CALLER_SPAN_ID, traceFlags: 1 },
      undefined,
      false,
      {},
      [new SlowRequestLog(60_000, logger)],
    );
    root.end();
    expect(lines).toEqual([]);
  });
});
