import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { TraceFlags, type Attributes } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { unixNanosText, type RecordedSpan, type SpanSink } from './recorded-span';

/**
 * Sends sampled spans to an OpenTelemetry Collector with OTLP/HTTP in its JSON encoding
 * (`POST <endpoint>/v1/traces`), in batches.
 *
 * It does what the SDK's `BatchSpanProcessor` with `@opentelemetry/exporter-trace-otlp-http` does,
 * more cheaply, because the bench showed that pair to be most of what tracing costs a request:
 * `pnpm bench --compare-tracing` (README, "Tracing") had S1 at 0.72 of its throughput at 100%
 * sampling, and a CPU profile of the gateway put the exporter's work (an OTLP object tree per batch,
 * `JSON.stringify` of it, a `TextEncoder` copy) and the garbage of spans held until their batch
 * is sent ahead of creating the spans. Here each span is written as OTLP/JSON into its batch's
 * buffer when it ends, so the span and its text are garbage at once (young garbage is nearly free;
 * spans held for a batch reached the old generation), and a batch's buffer is the request's body.
 *
 * The encoding is checked against OpenTelemetry's own (`@opentelemetry/otlp-transformer`) in
 * test/otlp-export.test.ts, span by span.
 *
 * Telemetry never holds a request up or takes the process down: at most `maxQueued` spans wait
 * (more are dropped and counted), a batch that cannot be sent is dropped with one warning per run of
 * failures, and at most `maxInFlight` exports are under way at once.
 */
export interface OtlpExportOptions {
  /** Where batches are POSTed: `<endpoint>/v1/traces`, or the traces endpoint as it is set. */
  url: string;
  /** `service.name` of the resource every span belongs to. */
  serviceName: string;
  /** The instrumentation scope of every span. */
  scope: { name: string; version?: string };
  logger: Logger;
  /**
   * A batch goes as soon as its spans reach this many bytes (so an export request carries about
   * this much: the span that reached it is the last). Default 256 KiB: measured with `pnpm run
   * tracing-cost` at 100%, a request's tracing cost 40 µs with 256 KiB or 1 MiB batches and 50 µs
   * with 64 KiB (an export request costs its sender tens of µs, whatever its size). Spans are
   * written into the batch's buffer as they end, so a large batch is never copied or joined.
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
  /** An export request that takes longer is abandoned (default 10 s). */
  timeoutMs?: number | undefined;
  /** Sent with every export request (an API key, a tenant): OTEL_EXPORTER_OTLP_HEADERS. */
  headers?: Record<string, string> | undefined;
  /**
   * `gzip` compresses each request's body, on libuv's thread pool (off the event loop): 6% of the
   * bytes for about 16 µs of CPU a span (README, "Tracing"), about what making the span costs; so
   * the default is `none`.
   */
  compression?: 'gzip' | 'none' | undefined;
}

const gzipAsync = promisify(gzip);

/**
 * An export request being filled: the OTLP envelope's opening, then spans written into `buffer`
 * one by one as they end, and the closing once it is full or its delay has passed.
 */
interface Batch {
  buffer: Buffer;
  /** Bytes written. */
  length: number;
  spans: number;
}

/** Room for spans beyond maxBatchBytes in a batch's buffer, so the last span rarely needs more. */
const SLACK_BYTES = 16 * 1024;
const COMMA = 0x2c;
/** Buffers kept for reuse: enough for a steady flow of batches, little memory when idle. */
const MAX_SPARE = 2;

export class OtlpJsonExport implements SpanSink {
  /** Spans dropped (queue full, or their batch could not be sent), for the warning. */
  dropped = 0;
  /** The batch spans are written into. */
  private filling: Batch | undefined;
  /** Full batches, oldest first, waiting for an export slot. */
  private readonly full: Batch[] = [];
  /** Spans in `filling` and `full`. */
  private queued = 0;
  /** Buffers of sent batches, kept for the next ones (at most MAX_SPARE). */
  private readonly spare: Buffer[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = new Set<Promise<void>>();
  private failing = false;
  /** Spans are being dropped because the queue is full (warned once per run of it). */
  private overflowing = false;
  private readonly prefix: Buffer;
  private readonly suffix = Buffer.from(']}]}]}');
  private readonly maxBatchBytes: number;
  private readonly delayMs: number;
  private readonly maxQueued: number;
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;
  private readonly target: URL;

  constructor(private readonly options: OtlpExportOptions) {
    this.maxBatchBytes = options.maxBatchBytes ?? 256 * 1024;
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
      ? `{"name":${quote(options.scope.name)},"version":${quote(options.scope.version)}}`
      : `{"name":${quote(options.scope.name)}}`;
    this.prefix = Buffer.from(
      `{"resourceSpans":[{"resource":{"attributes":[${keyValue('service.name', options.serviceName)}]},` +
        `"scopeSpans":[{"scope":${scope},"spans":[`,
    );
  }

  onEnd(span: RecordedSpan): void {
    // Recorded but not sampled (the slow-request log records every request): not exported.
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queued >= this.maxQueued) {
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
    this.write(encodeSpan(span));
    this.queued++;
    if (this.full.length > 0) this.sendFull();
    if (this.filling) this.timer ??= setTimeout(() => this.flush(), this.delayMs).unref();
  }

  /** Sends what is queued (every batch of it), and waits for every export under way. */
  async forceFlush(): Promise<void> {
    this.seal();
    while (this.full.length > 0) {
      this.sendFull();
      if (this.full.length > 0) await Promise.race(this.inFlight);
    }
    await Promise.all(this.inFlight);
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    clearTimeout(this.timer);
    this.agent.destroy();
  }

  /**
   * Writes a span's text into the batch being filled, as UTF-8 (the one copy it takes: no batch
   * of texts is joined, and the text is garbage at once). Measured: joining 100 texts into a body
   * and encoding it cost more than writing each text when it ends.
   */
  private write(text: string): void {
    // At most 3 bytes of UTF-8 for each UTF-16 unit, and a comma.
    const most = text.length * 3 + 1;
    let batch = this.filling;
    if (!batch) {
      const size = this.prefix.length + this.maxBatchBytes + SLACK_BYTES + this.suffix.length;
      const buffer =
        this.spare.pop() ??
        Buffer.allocUnsafe(Math.max(size, this.prefix.length + most + this.suffix.length));
      batch = this.filling = { buffer, length: this.prefix.copy(buffer), spans: 0 };
    }
    if (batch.length + most + this.suffix.length > batch.buffer.length) {
      // A span larger than the slack: a buffer of its own size for this batch.
      const grown = Buffer.allocUnsafe(batch.length + most + this.suffix.length);
      batch.buffer.copy(grown, 0, 0, batch.length);
      batch.buffer = grown;
    }
    if (batch.spans > 0) batch.buffer[batch.length++] = COMMA;
    batch.length += batch.buffer.write(text, batch.length);
    batch.spans++;
    if (batch.length - this.prefix.length >= this.maxBatchBytes) this.seal();
  }

  /** Closes the batch being filled, if it has spans, and puts it in line to be sent. */
  private seal(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.filling;
    if (!batch) return;
    this.filling = undefined;
    batch.length += this.suffix.copy(batch.buffer, batch.length);
    this.full.push(batch);
  }

  /** The delay of the batch being filled has passed: it goes as it is. */
  private flush(): void {
    this.seal();
    this.sendFull();
  }

  /** Sends full batches, oldest first, while export slots are free; the rest wait for one. */
  private sendFull(): void {
    while (this.full.length > 0 && this.inFlight.size < this.maxInFlight) {
      const batch = this.full.shift()!;
      this.queued -= batch.spans;
      // Room again: the next overflow is a new run of drops, and warned about.
      if (this.queued < this.maxQueued / 2) this.overflowing = false;
      const exporting = this.post(batch.buffer.subarray(0, batch.length)).then(
        () => {
          if (this.failing) this.options.logger.info('traces are exported again');
          this.failing = false;
          // Sent and answered: nothing reads the buffer any more. (A failed request's buffer is
          // left to the garbage collector: its socket may still hold it.)
          if (this.spare.length < MAX_SPARE) this.spare.push(batch.buffer);
        },
        (error: unknown) => {
          this.dropped += batch.spans;
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
        // What filled up meanwhile goes now.
        this.sendFull();
      });
      this.inFlight.add(tracked);
    }
  }

  private async post(batch: Buffer): Promise<void> {
    const gzipped = this.options.compression === 'gzip';
    const body = gzipped ? await gzipAsync(batch) : batch;
    return new Promise((resolve, reject) => {
      const req = this.send(
        this.target,
        {
          method: 'POST',
          agent: this.agent,
          timeout: this.timeoutMs,
          // The configured headers first: these describe the body, and are not theirs to change.
          headers: {
            ...this.options.headers,
            'Content-Type': 'application/json',
            'Content-Length': body.length,
            ...(gzipped && { 'Content-Encoding': 'gzip' }),
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

/**
 * `text` as a JSON string, as JSON.stringify writes it. Most texts here (names, ids, attribute
 * keys and values) need no escaping: those are quoted as they are, which measured several times
 * faster than calling JSON.stringify for each.
 */
export function quote(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // Control characters, `"`, `\`, and surrogates (a lone one is escaped): JSON.stringify's.
    if (code < 0x20 || code === 0x22 || code === 0x5c || (code >= 0xd800 && code <= 0xdfff)) {
      return JSON.stringify(text);
    }
  }
  return `"${text}"`;
}

/**
 * An attribute's value as OTLP's AnyValue, as @opentelemetry/otlp-transformer maps it; maps and byte
 * arrays, which no span here carries, are written as an empty value.
 */
function anyValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return `{"stringValue":${quote(value)}}`;
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
  return `{"key":${quote(key)},"value":${anyValue(value)}}`;
}

/**
 * The encoded attributes of spans still holding the object they started with: one object for
 * every span of a kind (a statement's, a gRPC method's), encoded once.
 */
const sharedAttributeLists = new WeakMap<Attributes, string>();

function spanAttributeList(span: RecordedSpan): string {
  if (!span.attributesShared) return attributeList(span.attributes);
  let list = sharedAttributeLists.get(span.attributes);
  if (list === undefined) {
    list = attributeList(span.attributes);
    sharedAttributeLists.set(span.attributes, list);
  }
  return list;
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
export function encodeSpan(span: RecordedSpan): string {
  const context = span.spanContext();
  const status = span.status;
  let text = `{"traceId":"${context.traceId}","spanId":"${context.spanId}"`;
  if (span.parentSpanId) text += `,"parentSpanId":"${span.parentSpanId}"`;
  const traceState = context.traceState?.serialize();
  if (traceState !== undefined) text += `,"traceState":${quote(traceState)}`;
  text +=
    `,"name":${quote(span.name)},"kind":${span.kind + 1}` +
    `,"startTimeUnixNano":"${unixNanosText(span.startTime)}","endTimeUnixNano":"${unixNanosText(span.endTime)}"` +
    `,"attributes":${spanAttributeList(span)},"droppedAttributesCount":${span.droppedAttributesCount}`;
  text += ',"events":[';
  span.events.forEach((event, index) => {
    text +=
      `${index === 0 ? '' : ','}{"attributes":${attributeList(event.attributes)},"name":${quote(event.name)}` +
      `,"timeUnixNano":"${unixNanosText(event.time)}","droppedAttributesCount":${event.droppedAttributesCount}}`;
  });
  text += `],"droppedEventsCount":${span.droppedEventsCount}`;
  text += `,"status":{"code":${status.code}${status.message === undefined ? '' : `,"message":${quote(status.message)}`}}`;
  text += ',"links":[';
  span.links.forEach((link, index) => {
    const linkState = link.context.traceState?.serialize();
    text +=
      `${index === 0 ? '' : ','}{"attributes":${attributeList(link.attributes)}` +
      `,"spanId":"${link.context.spanId}","traceId":"${link.context.traceId}"` +
      (linkState === undefined ? '' : `,"traceState":${quote(linkState)}`) +
      `,"droppedAttributesCount":${link.droppedAttributesCount}` +
      `,"flags":${spanFlags(link.context.traceFlags, link.context.isRemote)}}`;
  });
  text += `],"droppedLinksCount":${span.droppedLinksCount}`;
  text += `,"flags":${spanFlags(context.traceFlags, span.parentIsRemote)}}`;
  return text;
}
