import { randomBytes } from 'node:crypto';
import {
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import type * as OpenTelemetryCore from '@opentelemetry/core';
import type { Logger } from 'pino';
import { currentContext, runWithContext } from './context';
import { OtlpJsonExport, type OtlpExportOptions } from './otlp-export';
import { RecordedSpan, type SpanSink } from './recorded-span';

export { SpanKind, SpanStatusCode } from '@opentelemetry/api';
export type { Span } from '@opentelemetry/api';

/**
 * Traces, set up once per process, with spans only where this project already has one choke point
 * (the gateway's request layer, the gRPC client and server wrappers, the data layer): no
 * auto-instrumentation, whose patches run for every request, sampled or not (measured: twice the
 * CPU per request, +80% at 10% sampling).
 *
 * Spans are OpenTelemetry's (`Span` of @opentelemetry/api), made by `RecordedSpan` rather than
 * the SDK's tracer, and sent by this package's OTLP exporter rather than the SDK's: the bench
 * measured both SDK parts as most of what tracing cost (recorded-span.ts and otlp-export.ts say
 * how much). The current span travels in the async request context (`RequestContext.trace`, see
 * context.ts) that every request already has, as an explicit parent: no second
 * AsyncLocalStorage, no global context manager, no `Context` object per span.
 *
 * Sampling is parent-based with a ratio for new traces (what the SDK's
 * `ParentBasedSampler(TraceIdRatioBasedSampler(ratio))` does), decided before any span exists: a
 * span that is not recorded is never created. An unsampled request gets a trace id at the edge
 * (for its log lines and X-Trace-Id) and passes it on; a service called with an unsampled
 * `traceparent` serves in the caller's span context. So an unsampled request costs a random
 * number and a `traceparent` per call.
 *
 * Tracing is on when there is somewhere for spans to go: an OTLP/HTTP endpoint
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`) and/or the slow-request log (`TRACE_SLOW_MS`). Otherwise every
 * helper here does nothing, and costs nothing.
 */

/** The tracing settings of an app's config (see `tracingEnv` in config.ts). */
export interface TracingConfig {
  /** `service.name` of every span. */
  OTEL_SERVICE_NAME: string;
  /** OTLP/HTTP base URL; spans go to `<endpoint>/v1/traces`. Unset: nothing is exported. */
  OTEL_EXPORTER_OTLP_ENDPOINT?: string | undefined;
  /** The traces URL as it is; wins over the base URL. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string | undefined;
  /** Headers of every export request; the traces ones win for a name in both. */
  OTEL_EXPORTER_OTLP_HEADERS?: Record<string, string> | undefined;
  OTEL_EXPORTER_OTLP_TRACES_HEADERS?: Record<string, string> | undefined;
  /** Milliseconds an export request may take; the traces one wins. */
  OTEL_EXPORTER_OTLP_TIMEOUT?: number | undefined;
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT?: number | undefined;
  /** `gzip` or `none`; the traces one wins. */
  OTEL_EXPORTER_OTLP_COMPRESSION?: 'gzip' | 'none' | undefined;
  OTEL_EXPORTER_OTLP_TRACES_COMPRESSION?: 'gzip' | 'none' | undefined;
  /** Share of new traces sampled; a caller's decision is kept. */
  OTEL_TRACES_SAMPLER_ARG: number;
  /** Log a span breakdown of every request slower than this (ms). Unset: off. */
  TRACE_SLOW_MS?: number | undefined;
}

export interface Tracing {
  /** Exports what is left; for the shutdown hook. */
  shutdown(): Promise<void>;
}

/** The instrumentation scope of every span made here. */
const SCOPE = { name: '@repo/service-kit' };

/** Where ended spans go; undefined while tracing is off. */
let sinks: readonly SpanSink[] | undefined;
/** OTEL_TRACES_SAMPLER_ARG: the share of new traces sampled. */
let ratio = 0;
/** With the slow-request log on, unsampled requests are recorded too (not exported). */
let recordAll = false;

/**
 * Starts tracing for this process (once; a second call is an error). Sampling is parent-based with
 * `ratio` for new traces, so a trace is whole or absent. With the slow-request log on, every span
 * is *recorded* (kept in memory until its request ends, so a slow one can be shown) but only
 * sampled ones are *exported*: the log sees every slow request, the collector the sampled share.
 */
export function setupTracing(config: TracingConfig, logger: Logger): Tracing {
  if (sinks) throw new Error('tracing is already set up in this process');
  const exporting = otlpExportOptions(config);
  const slowMs = config.TRACE_SLOW_MS;
  const chosen: SpanSink[] = [];
  if (exporting) chosen.push(new OtlpJsonExport({ ...exporting, logger }));
  if (slowMs !== undefined) chosen.push(new SlowRequestLog(slowMs, logger));
  if (chosen.length === 0) return { shutdown: () => Promise.resolve() };

  ratio = config.OTEL_TRACES_SAMPLER_ARG;
  recordAll = slowMs !== undefined;
  sinks = chosen;
  // The headers' names only: their values are often credentials.
  logger.info(
    {
      url: exporting?.url,
      headers: exporting && Object.keys(exporting.headers ?? {}),
      compression: exporting?.compression,
      ratio,
      slowMs,
    },
    'tracing on',
  );
  return {
    shutdown: async () => {
      sinks = undefined;
      await Promise.all(chosen.map((sink) => sink.shutdown()));
    },
  };
}

/**
 * Where and how spans are exported, from the OTLP exporter settings as OpenTelemetry's SDKs read
 * them: a traces-only setting wins over the general one, and the traces endpoint is used as it is
 * while the general one gets `/v1/traces` appended. Undefined when neither endpoint is set.
 */
export function otlpExportOptions(
  config: TracingConfig,
): Omit<OtlpExportOptions, 'logger'> | undefined {
  const base = config.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url =
    config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/traces`);
  if (url === undefined) return undefined;
  return {
    url,
    serviceName: config.OTEL_SERVICE_NAME,
    scope: SCOPE,
    headers: { ...config.OTEL_EXPORTER_OTLP_HEADERS, ...config.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
    timeoutMs: config.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? config.OTEL_EXPORTER_OTLP_TIMEOUT,
    compression:
      config.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION ?? config.OTEL_EXPORTER_OTLP_COMPRESSION,
  };
}

/** The span of the work being done here (recorded or not), if it is traced. */
export function activeSpan(): Span | undefined {
  return currentContext()?.trace;
}

/** Reads `traceparent`/`tracestate` from HTTP headers or gRPC metadata (first value). */
export type Carrier = Record<string, unknown> | { get(key: string): unknown[] };

/** The first value of `key` in HTTP headers or gRPC metadata, if it is a string. */
function firstValue(carrier: Carrier, key: string): string | undefined {
  const value =
    typeof carrier.get === 'function'
      ? (carrier as { get(key: string): unknown[] }).get(key)[0]
      : (carrier as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Random hex digits for ids, drawn 4 KiB of random bytes at a time: one system call and one hex
 * conversion per ~170 new traces, and a slice of a string per id (converting each id from bytes
 * apart, and testing it with a regular expression, showed in the profile of unsampled requests).
 */
let hexPool = '';
let hexOffset = 0;
const ALL_ZERO = { 16: '0'.repeat(16), 32: '0'.repeat(32) };

/** `digits` random lowercase hex digits, never all zero (an all-zero id is invalid). */
function randomId(digits: 16 | 32): string {
  if (hexOffset + digits > hexPool.length) {
    hexPool = randomBytes(4096).toString('hex');
    hexOffset = 0;
  }
  const id = hexPool.slice(hexOffset, (hexOffset += digits));
  return id === ALL_ZERO[digits] ? randomId(digits) : id;
}

/**
 * W3C `traceparent`: version (not ff), trace id and parent id (not all zero), flags; a version 00
 * header ends there, a later version may add fields. As @opentelemetry/core's `parseTraceParent`
 * reads it (test/tracing.test.ts compares the two on valid and malformed headers).
 */
const TRACEPARENT =
  /^\s?((?!ff)[\da-f]{2})-((?![0]{32})[\da-f]{32})-((?![0]{16})[\da-f]{16})-([\da-f]{2})(-.*)?\s?$/;

/**
 * `TraceState` of @opentelemetry/core, loaded when a caller first sends a `tracestate`: core is
 * needed for nothing else at run time, and loading it took about 35 ms of every app's start-up
 * (traced or not; measured on a 2-core machine).
 */
let TraceState: typeof OpenTelemetryCore.TraceState | undefined;

/**
 * The caller's span context from `carrier`'s `traceparent` (and `tracestate`), read and validated
 * as W3CTraceContextPropagator's `extract` does, but reading `traceparent` once, not twice; or
 * undefined when there is none or it is malformed (then a new trace starts).
 */
function callerSpanContext(carrier: Carrier): SpanContext | undefined {
  const traceparent = firstValue(carrier, 'traceparent');
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  if (!match || (match[1] === '00' && match[5])) return undefined;
  const parsed = { traceId: match[2]!, spanId: match[3]!, traceFlags: parseInt(match[4]!, 16) };
  const tracestate = firstValue(carrier, 'tracestate');
  if (!tracestate) return { ...parsed, isRemote: true };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  TraceState ??= (require('@opentelemetry/core') as typeof OpenTelemetryCore).TraceState;
  return { ...parsed, isRemote: true, traceState: new TraceState(tracestate) };
}

/** Attributes of a span started with none: shared, and copied by the first `setAttribute`. */
const NO_ATTRIBUTES: Attributes = Object.freeze({});

/** A new span's own ids in the trace of `parent` (its flags and state too). */
function childContext(parent: SpanContext, traceFlags = parent.traceFlags): SpanContext {
  return parent.traceState
    ? { traceId: parent.traceId, spanId: randomId(16), traceFlags, traceState: parent.traceState }
    : { traceId: parent.traceId, spanId: randomId(16), traceFlags };
}

/**
 * Starts the span of a request or call arriving here (kind SERVER), continuing the caller's trace
 * when `carrier` holds a `traceparent`; for an event being handled, kind CONSUMER with the event's
 * `traceparent`/`tracestate` (from its envelope), so the handling is a child of the request that
 * wrote the event. Returns undefined when tracing is off. Otherwise the span to serve the request
 * in, recorded or not (its ids are what the logs and the next hop carry): a sampled caller's
 * trace is recorded here too, an unsampled caller's is not (it is served in the caller's span
 * context as it came), and a new trace is sampled at the configured ratio.
 */
export function startServerSpan(
  name: string,
  carrier: Carrier,
  kind: SpanKind = SpanKind.SERVER,
): Span | undefined {
  if (!sinks) return undefined;
  const caller = callerSpanContext(carrier);
  const sampled = caller ? (caller.traceFlags & TraceFlags.SAMPLED) !== 0 : Math.random() < ratio;
  if (!sampled && !recordAll) {
    return trace.wrapSpanContext(
      caller ?? { traceId: randomId(32), spanId: randomId(16), traceFlags: TraceFlags.NONE },
    );
  }
  const flags = sampled ? TraceFlags.SAMPLED : TraceFlags.NONE;
  return caller
    ? new RecordedSpan(
        name,
        kind,
        childContext(caller, flags),
        caller.spanId,
        true,
        NO_ATTRIBUTES,
        sinks,
      )
    : new RecordedSpan(
        name,
        kind,
        { traceId: randomId(32), spanId: randomId(16), traceFlags: flags },
        undefined,
        false,
        NO_ATTRIBUTES,
        sinks,
      );
}

/**
 * Starts a span inside the request being served (a call out, a query), or returns undefined when
 * there is nothing to record: tracing off, no request, or a request that is not recorded (then the
 * request's own span is what goes on to the next hop). `attributes` are kept as given (pass one
 * constant object for every span of a kind; `setAttribute` copies it first).
 */
export function startChildSpan(
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: Span | undefined = activeSpan(),
): Span | undefined {
  if (!sinks || !parent?.isRecording()) return undefined;
  const parentContext = parent.spanContext();
  return new RecordedSpan(
    name,
    kind,
    childContext(parentContext),
    parentContext.spanId,
    false,
    attributes,
    sinks,
  );
}

/**
 * Puts `traceparent` (and `tracestate`) for `span` into gRPC metadata or anything with `set`, as
 * W3CTraceContextPropagator's `inject` writes them (every span here has valid ids).
 */
export function injectTraceContext(
  span: Span | undefined,
  carrier: { set(key: string, value: string): void },
): void {
  if (!span) return;
  const { traceId, spanId, traceFlags, traceState } = span.spanContext();
  const flags = (traceFlags & 0xff).toString(16);
  carrier.set('traceparent', `00-${traceId}-${spanId}-${flags.length === 1 ? '0' : ''}${flags}`);
  if (traceState) carrier.set('tracestate', traceState.serialize());
}

/**
 * The `traceparent` (and `tracestate`) of the work being done here, for what carries it on by other
 * means than a gRPC call: an event's envelope, written in the request that causes it. Empty when
 * tracing is off or no request is being served.
 */
export function currentTraceHeaders(): { traceparent?: string; tracestate?: string } {
  const headers: { traceparent?: string; tracestate?: string } = {};
  injectTraceContext(activeSpan(), {
    set: (key, value) => {
      if (key === 'traceparent' || key === 'tracestate') headers[key] = value;
    },
  });
  return headers;
}

/** Ends a span with an error status (the message is never sent to clients; it may name internals). */
export function endWithError(span: Span, error: unknown): void {
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
  span.end();
}

/**
 * Runs `work` as a span inside the request being served, the span being the parent of whatever
 * `work` starts (through a request context of its own). Without a recorded request: just `work()`.
 */
export function withChildSpan<T>(
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  work: () => Promise<T>,
): Promise<T> {
  const request = currentContext();
  const span = request && startChildSpan(name, kind, attributes, request.trace);
  if (!span) return work();
  return runWithContext({ ...request, trace: span }, work).then(
    (result) => {
      span.end();
      return result;
    },
    (error: unknown) => {
      endWithError(span, error);
      throw error;
    },
  );
}

/** Attributes of a gRPC span (OpenTelemetry's RPC conventions), with the request id (see README). */
export function rpcAttributes(service: string, method: string, requestId?: string): Attributes {
  return {
    'rpc.system': 'grpc',
    'rpc.service': service,
    'rpc.method': method,
    ...(requestId === undefined ? {} : { 'request.id': requestId }),
  };
}

/** gRPC codes that are the server's failure (the conventions' list); a client fails on any non-OK. */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15]);

/** Ends a gRPC span with its status code (a number, as grpc-js has it; 0 is OK). */
export function endRpcSpan(
  span: Span,
  code: number,
  kind: 'client' | 'server',
  name?: string,
): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (kind === 'client' ? code !== 0 : SERVER_ERROR_CODES.has(code)) {
    span.setStatus({
      code: SpanStatusCode.ERROR,
      ...(name === undefined ? {} : { message: name }),
    });
  }
  span.end();
}

/** At most this many requests' spans are held at once; the oldest are dropped beyond it. */
const MAX_PENDING_TRACES = 1_000;

/** The label of a span in a breakdown: database spans say so (`pg SELECT products`). */
function spanLabel(span: RecordedSpan): string {
  const database = span.attributes['db.system.name'] === 'postgresql' ? 'pg ' : '';
  return `${database}${span.name} ${span.durationMs.toFixed(1)} ms`;
}

/**
 * `TRACE_SLOW_MS`: keeps the spans of each request served here until the request's own span (the
 * first span of its trace in this process) ends; if that took longer than `slowMs`, logs one line
 * with the request's span tree, e.g. `POST /v1/orders 31.0 ms > order.v1.OrderService/CreateOrder
 * 27.5 ms`, and in the order service `order.v1.OrderService/CreateOrder 27.5 ms >
 * [user.v1.UserService/GetUser 3.2 ms, pg transaction 20.1 ms > [pg SELECT idempotency_keys 1.1 ms,
 * ...]]` (siblings in brackets, in start order). Each process logs its own part, with the trace id,
 * so the lines of one request are found together; no collector is needed.
 */
export class SlowRequestLog implements SpanSink {
  private readonly pending = new Map<string, RecordedSpan[]>();

  constructor(
    private readonly slowMs: number,
    private readonly logger: Logger,
  ) {}

  onEnd(span: RecordedSpan): void {
    const { traceId, spanId } = span.spanContext();
    let spans = this.pending.get(traceId);
    if (!span.isLocalRoot) {
      if (!spans) {
        if (this.pending.size >= MAX_PENDING_TRACES) {
          this.pending.delete(this.pending.keys().next().value!);
        }
        spans = [];
        this.pending.set(traceId, spans);
      }
      spans.push(span);
      return;
    }
    this.pending.delete(traceId);
    const ms = span.durationMs;
    if (ms < this.slowMs) return;
    const children = new Map<string, RecordedSpan[]>();
    for (const child of spans ?? []) {
      const parentId = child.parentSpanId!;
      const list = children.get(parentId);
      if (list) list.push(child);
      else children.set(parentId, [child]);
    }
    const render = (node: RecordedSpan): string => {
      const below = (children.get(node.spanContext().spanId) ?? []).sort(
        (a, b) => a.startTime - b.startTime,
      );
      if (below.length === 0) return spanLabel(node);
      const inner = below.length === 1 ? render(below[0]!) : `[${below.map(render).join(', ')}]`;
      return `${spanLabel(node)} > ${inner}`;
    };
    this.logger.info(
      { trace_id: traceId, span_id: spanId, ms: +ms.toFixed(1), slowMs: this.slowMs },
      `slow: ${render(span)}`,
    );
  }

  shutdown(): Promise<void> {
    this.pending.clear();
    return Promise.resolve();
  }
}
