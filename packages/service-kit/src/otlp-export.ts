import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { TraceFlags, type Attributes, type HrTime } from '@opentelemetry/api';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';

/**
 * Sends sampled spans to an OpenTelemetry Collector with OTLP/HTTP in its JSON encoding
 * (`POST <endpoint>/v1/traces`), in batches.
 *
 * It does what the SDK's `BatchSpanProcessor` with `@opentelemetry/exporter-trace-otlp-http` does,
 * more cheaply, because the bench showed that pair to be most of what tracing costs a request:
 * `pnpm bench --compare-tracing` (README, "Tracing") had S1 at 0.72 of its throughput at 100%
 * sampling, and a CPU profile of the gateway put the exporter's work (an OTLP object tree per batch,
 * `JSON.stringify` of it, a `TextEncoder` copy) and the garbage of spans held until their batch
 * is sent ahead of creating the spans. Here each span is written as its OTLP/JSON text when it
 * ends, so the span itself is garbage at once (young garbage is nearly free; spans held for a batch
 * reached the old generation), and a batch is those texts joined.
 *
 * The encoding is checked against OpenTelemetry's own (`@opentelemetry/otlp-transformer`) in
 * test/otlp-export.test.ts, span by span.
 *
 * Telemetry never holds a request up or takes the process down: at most `maxQueued` spans wait
 * (more are dropped and counted), a batch that cannot be sent is dropped with one warning per run of
 * failures, and at most `maxInFlight` exports are under way at once.
 */
export interface OtlpExportOptions {
  /** `<endpoint>/v1/traces`. */
  url: string;
  /** `service.name` of the resource every span belongs to. */
  serviceName: string;
  /** The instrumentation scope of every span. */
  scope: { name: string; version?: string };
  logger: Logger;
  /**
   * An export request carries at most this many bytes of spans (one span, if it is larger). Kept
   * well under V8's large-object size (128 KiB): a larger body is a fresh allocation of its own,
   * and measured here, joining and encoding 512 spans (350 KB) at once cost ten times as much per
   * span as 64 KB at a time.
   */
  maxBatchBytes?: number;
  /** A batch smaller than maxBatchBytes is sent this long after its first span. */
  delayMs?: number;
  /** Spans waiting at most; beyond, new spans are dropped. */
  maxQueued?: number;
  /**
   * Export requests under way at once (default 8). A process whose event loop turns are long
   * reads its exports' answers late, and each batch waits for a free slot: with 2, `pnpm run
   * tracing-cost` at 100% (which ends 400 spans a turn) dropped three spans in four.
   */
  maxInFlight?: number;
  /** An export request that takes longer is abandoned. */
  timeoutMs?: number;
}

export class OtlpJsonExport implements SpanProcessor {
  /** Spans dropped (queue full, or their batch could not be sent), for the warning. */
  dropped = 0;
  private queued: string[] = [];
  /** The length of the queued texts together. */
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = new Set<Promise<void>>();
  private failing = false;
  /** Spans are being dropped because the queue is full (warned once per run of it). */
  private overflowing = false;
  private readonly prefix: string;
  private readonly suffix = ']}]}]}';
  private readonly maxBatchBytes: number;
  private readonly delayMs: number;
  private readonly maxQueued: number;
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;
  private readonly target: URL;

  constructor(private readonly options: OtlpExportOptions) {
    this.maxBatchBytes = options.maxBatchBytes ?? 64 * 1024;
    this.delayMs = options.delayMs ?? 1_000;
    this.maxQueued = options.maxQueued ?? 4_096;
    this.maxInFlight = options.maxInFlight ?? 8;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.target = new URL(options.url);
    const https = this.target.protocol === 'https:';
    this.agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: this.maxInFlight })
      : new HttpAgent({ keepAlive: true, maxSockets: this.maxInFlight });
    this.send = https ? httpsRequest : httpRequest;
    const scope = options.scope.version
      ? `{"name":${JSON.stringify(options.scope.name)},"version":${JSON.stringify(options.scope.version)}}`
      : `{"name":${JSON.stringify(options.scope.name)}}`;
    this.prefix =
      `{"resourceSpans":[{"resource":{"attributes":[${keyValue('service.name', options.serviceName)}]},` +
      `"scopeSpans":[{"scope":${scope},"spans":[`;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    // Recorded but not sampled (the slow-request log records every request): not exported.
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queued.length >= this.maxQueued) {
      this.dropped++;
      if (!this.overflowing && !this.failing) {
        this.options.logger.warn(
          { url: this.options.url, maxQueued: this.maxQueued, dropped: this.dropped },
          'spans are made faster than the collector takes them: spans are dropped',
        );
      }
      this.overflowing = true;
      return;
    }
    const text = encodeSpan(span);
    this.queued.push(text);
    this.queuedBytes += text.length;
    if (this.queuedBytes >= this.maxBatchBytes) this.sendBatch();
    else this.timer ??= setTimeout(() => this.sendBatch(), this.delayMs).unref();
  }

  /** Sends what is queued (every batch of it), and waits for every export under way. */
  async forceFlush(): Promise<void> {
    while (this.queued.length > 0) {
      const before = this.queued.length;
      this.sendBatch();
      if (this.queued.length === before) await Promise.race(this.inFlight);
    }
    await Promise.all(this.inFlight);
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    clearTimeout(this.timer);
    this.agent.destroy();
  }

  /** One batch off the queue, if an export may start now; the rest waits for the next turn. */
  private sendBatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queued.length === 0 || this.inFlight.size >= this.maxInFlight) return;
    let count = 0;
    let bytes = 0;
    while (count < this.queued.length && (count === 0 || bytes < this.maxBatchBytes)) {
      bytes += this.queued[count++]!.length;
    }
    const batch = this.queued.splice(0, count);
    this.queuedBytes -= bytes;
    // Room again: the next overflow is a new run of drops, and warned about.
    if (this.queued.length < this.maxQueued / 2) this.overflowing = false;
    const body = Buffer.from(`${this.prefix}${batch.join(',')}${this.suffix}`);
    const exporting = this.post(body).then(
      () => {
        if (this.failing) this.options.logger.info('traces are exported again');
        this.failing = false;
      },
      (error: unknown) => {
        this.dropped += batch.length;
        if (!this.failing) {
          this.options.logger.warn(
            { err: error, url: this.options.url, dropped: this.dropped },
            'cannot export traces: spans are dropped until the collector answers',
          );
        }
        this.failing = true;
      },
    );
    const tracked = exporting.finally(() => {
      this.inFlight.delete(tracked);
      // What queued up meanwhile goes now if it makes batches, otherwise after the delay.
      while (this.queuedBytes >= this.maxBatchBytes && this.inFlight.size < this.maxInFlight) {
        this.sendBatch();
      }
      if (this.queued.length > 0 && this.queuedBytes < this.maxBatchBytes) {
        this.timer ??= setTimeout(() => this.sendBatch(), this.delayMs).unref();
      }
    });
    this.inFlight.add(tracked);
  }

  private post(body: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.send(
        this.target,
        {
          method: 'POST',
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': body.length,
          },
        },
        (res) => {
          res.resume(); // the answer's body says nothing we act on
          res.on('end', () =>
            res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300
              ? resolve()
              : reject(new Error(`the collector answered ${res.statusCode}`)),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** `[seconds, nanoseconds]` as OTLP/JSON's decimal string of nanoseconds since the epoch. */
export function nanosText([seconds, nanos]: HrTime): string {
  const tail = String(Math.trunc(nanos));
  const whole = Math.trunc(seconds);
  return whole === 0 ? tail : `${whole}${'000000000'.slice(tail.length)}${tail}`;
}

/**
 * An attribute's value as OTLP's AnyValue, as @opentelemetry/otlp-transformer maps it; maps and byte
 * arrays, which no span here carries, are written as an empty value.
 */
function anyValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return `{"stringValue":${JSON.stringify(value)}}`;
    case 'number':
      // JSON has no NaN or Infinity: JSON.stringify (what OpenTelemetry's encoder uses) writes null.
      if (Number.isInteger(value)) return `{"intValue":${value}}`;
      return `{"doubleValue":${Number.isFinite(value) ? value : null}}`;
    case 'boolean':
      return `{"boolValue":${value}}`;
    default:
      return Array.isArray(value)
        ? `{"arrayValue":{"values":[${(value as unknown[]).map((item) => anyValue(item)).join(',')}]}}`
        : '{}';
  }
}

function keyValue(key: string, value: unknown): string {
  return `{"key":${JSON.stringify(key)},"value":${anyValue(value)}}`;
}

function attributeList(attributes: Attributes | undefined): string {
  let text = '';
  if (attributes) {
    for (const key in attributes) {
      text += text === '' ? keyValue(key, attributes[key]) : `,${keyValue(key, attributes[key])}`;
    }
  }
  return `[${text}]`;
}

/** OTLP's span flags: the W3C trace flags, and whether the parent is known to be remote or not. */
function spanFlags(traceFlags: number, parentIsRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (parentIsRemote ? 0x200 : 0);
}

/** One span as OTLP/JSON (the fields @opentelemetry/otlp-transformer writes, in its order). */
export function encodeSpan(span: ReadableSpan): string {
  const context = span.spanContext();
  const parent = span.parentSpanContext;
  const status = span.status;
  let text = `{"traceId":"${context.traceId}","spanId":"${context.spanId}"`;
  if (parent?.spanId) text += `,"parentSpanId":"${parent.spanId}"`;
  const traceState = context.traceState?.serialize();
  if (traceState !== undefined) text += `,"traceState":${JSON.stringify(traceState)}`;
  text +=
    `,"name":${JSON.stringify(span.name)},"kind":${span.kind + 1}` +
    `,"startTimeUnixNano":"${nanosText(span.startTime)}","endTimeUnixNano":"${nanosText(span.endTime)}"` +
    `,"attributes":${attributeList(span.attributes)},"droppedAttributesCount":${span.droppedAttributesCount}`;
  text += ',"events":[';
  span.events.forEach((event, index) => {
    text +=
      `${index === 0 ? '' : ','}{"attributes":${attributeList(event.attributes)},"name":${JSON.stringify(event.name)}` +
      `,"timeUnixNano":"${nanosText(event.time)}","droppedAttributesCount":${event.droppedAttributesCount ?? 0}}`;
  });
  text += `],"droppedEventsCount":${span.droppedEventsCount}`;
  text += `,"status":{"code":${status.code}${status.message === undefined ? '' : `,"message":${JSON.stringify(status.message)}`}}`;
  text += ',"links":[';
  span.links.forEach((link, index) => {
    const linkState = link.context.traceState?.serialize();
    text +=
      `${index === 0 ? '' : ','}{"attributes":${attributeList(link.attributes)}` +
      `,"spanId":"${link.context.spanId}","traceId":"${link.context.traceId}"` +
      (linkState === undefined ? '' : `,"traceState":${JSON.stringify(linkState)}`) +
      `,"droppedAttributesCount":${link.droppedAttributesCount ?? 0}` +
      `,"flags":${spanFlags(link.context.traceFlags, link.context.isRemote)}}`;
  });
  text += `],"droppedLinksCount":${span.droppedLinksCount}`;
  text += `,"flags":${spanFlags(context.traceFlags, parent?.isRemote)}}`;
  return text;
}
