import { randomBytes } from 'node:crypto';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  createContextKey,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import { TraceState, W3CTraceContextPropagator, parseTraceParent } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  SamplingDecision,
  TracerProvider,
  type ReadableSpan,
  type Sampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { currentContext, runWithContext } from './context';
import { OtlpJsonExport } from './otlp-export';

export { SpanKind, SpanStatusCode } from '@opentelemetry/api';
export type { Context, Span } from '@opentelemetry/api';

/**
 * Traces, set up once per process, with spans only where this project already has one choke point
 * (the gateway's request layer, the gRPC client and server wrappers, the data layer): no
 * auto-instrumentation, whose patches run for every request, sampled or not (measured: twice the
 * CPU per request, +80% at 10% sampling).
 *
 * The trace context travels in the async request context (`RequestContext.trace`, see context.ts)
 * that every request already has, as an explicit parent: no second AsyncLocalStorage, no global
 * context manager.
 *
 * Sampling is parent-based with a ratio for new traces (what the SDK's
 * `ParentBasedSampler(TraceIdRatioBasedSampler(ratio))` does), but decided here, before the SDK is
 * asked for anything: a span that is not recorded is never created. An unsampled request gets a
 * trace id at the edge (for its log lines and X-Trace-Id) and passes that context on; a service
 * called with an unsampled `traceparent` serves in the caller's context. Measured: the SDK's own
 * `startSpan` for unsampled spans made the system 18% slower with nothing sampled at all; decided
 * here, an unsampled request costs a random number and a `traceparent` per call.
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

let tracer: Tracer | undefined;
/** OTEL_TRACES_SAMPLER_ARG: the share of new traces sampled. */
let ratio = 0;
/** With the slow-request log on, unsampled requests are recorded too (not exported). */
let recordAll = false;

/** Set on the parent context of a new trace's first span when that trace is sampled. */
const SAMPLED_ROOT = createContextKey('@repo/service-kit sampled root');

/**
 * The SDK's sampler. The SDK is asked to start a span only once it is decided that the span is
 * recorded (see `startServerSpan`, `startChildSpan`); what is left is whether it is exported:
 * a child as its parent is, the first span of a new trace as decided at the edge.
 */
const decided: Sampler = {
  shouldSample(context) {
    const parent = trace.getSpanContext(context);
    const sampled = parent
      ? (parent.traceFlags & TraceFlags.SAMPLED) !== 0
      : context.getValue(SAMPLED_ROOT) === true;
    return {
      decision: sampled ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.RECORD,
    };
  },
  toString: () => 'ParentBased{root=ratio, decided in @repo/service-kit/tracing}',
};

/**
 * Starts tracing for this process (once; a second call is an error). Sampling is parent-based with
 * `ratio` for new traces, so a trace is whole or absent. With the slow-request log on, every span
 * is *recorded* (kept in memory until its request ends, so a slow one can be shown) but only
 * sampled ones are *exported*: the log sees every slow request, the collector the sampled share.
 */
export function setupTracing(config: TracingConfig, logger: Logger): Tracing {
  if (tracer) throw new Error('tracing is already set up in this process');
  const endpoint = config.OTEL_EXPORTER_OTLP_ENDPOINT;
  const slowMs = config.TRACE_SLOW_MS;
  const processors: SpanProcessor[] = [];
  if (endpoint) {
    const url = `${endpoint.replace(/\/+$/, '')}/v1/traces`;
    processors.push(
      new OtlpJsonExport({ url, serviceName: config.OTEL_SERVICE_NAME, scope: SCOPE, logger }),
    );
  }
  if (slowMs !== undefined) processors.push(new SlowRequestLog(slowMs, logger));
  if (processors.length === 0) return { shutdown: () => Promise.resolve() };

  ratio = config.OTEL_TRACES_SAMPLER_ARG;
  recordAll = slowMs !== undefined;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.OTEL_SERVICE_NAME }),
    sampler: decided,
    spanProcessors: processors,
  });
  tracer = provider.getTracer(SCOPE.name);
  logger.info({ endpoint, ratio, slowMs }, 'tracing on');
  return {
    shutdown: async () => {
      tracer = undefined;
      await provider.shutdown();
    },
  };
}

/** The trace context of the request being served here, if any. */
export function activeTraceContext(): Context | undefined {
  return currentContext()?.trace;
}

/** The span context (trace and span ids) of the request being served here, if it is traced. */
export function activeSpanContext(): SpanContext | undefined {
  const context = currentContext()?.trace;
  return context ? trace.getSpanContext(context) : undefined;
}

const propagator = new W3CTraceContextPropagator();

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

const setter: TextMapSetter<{ set(key: string, value: string): void }> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

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
 * The caller's span context from `carrier`'s `traceparent` (and `tracestate`), read and validated
 * as W3CTraceContextPropagator's `extract` does, but reading `traceparent` once, not twice; or
 * undefined when there is none or it is malformed (then a new trace starts).
 */
function callerSpanContext(carrier: Carrier): SpanContext | undefined {
  const traceparent = firstValue(carrier, 'traceparent');
  const parsed = traceparent === undefined ? null : parseTraceParent(traceparent);
  if (!parsed) return undefined;
  const tracestate = firstValue(carrier, 'tracestate');
  return tracestate
    ? { ...parsed, isRemote: true, traceState: new TraceState(tracestate) }
    : { ...parsed, isRemote: true };
}

/**
 * Starts the span of a request or call arriving here (kind SERVER), continuing the caller's trace
 * when `carrier` holds a `traceparent`; for an event being handled, kind CONSUMER with the event's
 * `traceparent`/`tracestate` (from its envelope), so the handling is a child of the request that
 * wrote the event. Returns undefined when tracing is off. Otherwise the span,
 * recorded or not (its ids are what the logs and the next hop carry), and the context to serve the
 * request in: a sampled caller's trace is recorded here too, an unsampled caller's is not (its
 * context is served in as it came), and a new trace is sampled at the configured ratio.
 */
export function startServerSpan(
  name: string,
  carrier: Carrier,
  kind: SpanKind = SpanKind.SERVER,
): { span: Span; context: Context } | undefined {
  if (!tracer) return undefined;
  const callerContext = callerSpanContext(carrier);
  const caller = callerContext && trace.wrapSpanContext(callerContext);
  const parent = caller ? trace.setSpan(ROOT_CONTEXT, caller) : ROOT_CONTEXT;
  const sampled = callerContext
    ? (callerContext.traceFlags & TraceFlags.SAMPLED) !== 0
    : Math.random() < ratio;
  if (!sampled && !recordAll) {
    if (caller) return { span: caller, context: parent };
    const span = trace.wrapSpanContext({
      traceId: randomId(32),
      spanId: randomId(16),
      traceFlags: TraceFlags.NONE,
    });
    return { span, context: trace.setSpan(ROOT_CONTEXT, span) };
  }
  const span = tracer.startSpan(
    name,
    { kind },
    caller ? parent : parent.setValue(SAMPLED_ROOT, sampled),
  );
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * Starts a span inside the request being served (a call out, a query), or returns undefined when
 * there is nothing to record: tracing off, no request, or a request that is not recorded (then the
 * request's own context is what goes on to the next hop).
 */
export function startChildSpan(
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: Context | undefined = activeTraceContext(),
): { span: Span; context: Context } | undefined {
  if (!tracer || !parent || !trace.getSpan(parent)?.isRecording()) return undefined;
  const span = tracer.startSpan(name, { kind, attributes }, parent);
  return { span, context: trace.setSpan(parent, span) };
}

/** Puts `traceparent` (and `tracestate`) for `context` into gRPC metadata or anything with `set`. */
export function injectTraceContext(
  context: Context | undefined,
  carrier: { set(key: string, value: string): void },
): void {
  if (context) propagator.inject(context, carrier, setter);
}

/**
 * The `traceparent` (and `tracestate`) of the work being done here, for what carries it on by other
 * means than a gRPC call: an event's envelope, written in the request that causes it. Empty when
 * tracing is off or no request is being served.
 */
export function currentTraceHeaders(): { traceparent?: string; tracestate?: string } {
  const headers: { traceparent?: string; tracestate?: string } = {};
  injectTraceContext(activeTraceContext(), {
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
  const started = request && startChildSpan(name, kind, attributes, request.trace);
  if (!started) return work();
  const { span, context } = started;
  return runWithContext({ ...request, trace: context }, work).then(
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

const millis = (time: [number, number]) => time[0] * 1e3 + time[1] / 1e6;

/** At most this many requests' spans are held at once; the oldest are dropped beyond it. */
const MAX_PENDING_TRACES = 1_000;

/** The label of a span in a breakdown: database spans say so (`pg SELECT products`). */
function spanLabel(span: ReadableSpan): string {
  const database = span.attributes['db.system.name'] === 'postgresql' ? 'pg ' : '';
  return `${database}${span.name} ${millis(span.duration).toFixed(1)} ms`;
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
export class SlowRequestLog implements SpanProcessor {
  private readonly pending = new Map<string, ReadableSpan[]>();

  constructor(
    private readonly slowMs: number,
    private readonly logger: Logger,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    const { traceId, spanId } = span.spanContext();
    const parent = span.parentSpanContext;
    const isLocalRoot = !parent || parent.isRemote === true;
    let spans = this.pending.get(traceId);
    if (!isLocalRoot) {
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
    const ms = millis(span.duration);
    if (ms < this.slowMs) return;
    const children = new Map<string, ReadableSpan[]>();
    for (const child of spans ?? []) {
      const parentId = child.parentSpanContext!.spanId;
      const list = children.get(parentId);
      if (list) list.push(child);
      else children.set(parentId, [child]);
    }
    const render = (node: ReadableSpan): string => {
      const below = (children.get(node.spanContext().spanId) ?? []).sort(
        (a, b) => millis(a.startTime) - millis(b.startTime),
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

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.pending.clear();
    return Promise.resolve();
  }
}
