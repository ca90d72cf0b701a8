import {
  SpanStatusCode,
  type Attributes,
  type AttributeValue,
  type Exception,
  type Link,
  type Span,
  type SpanContext,
  type SpanKind,
  type SpanStatus,
  type TimeInput,
} from '@opentelemetry/api';

/**
 * The spans this project records: OpenTelemetry's `Span` interface (@opentelemetry/api), written
 * here rather than taken from the SDK (`@opentelemetry/sdk-trace`).
 *
 * Why: a CPU profile of the gateway under S1 at 100% sampling (`pnpm run profile`) put 31 µs of
 * every request in the SDK for its two spans (its `Tracer.startSpan`, tracer metrics, attribute
 * cleaning, `SpanImpl` and a `Context` copied for each span), 7% of the gateway's 430 µs per
 * request, before the garbage those objects make (README, "Tracing"). A span here is one object
 * whose fields are what a span sink reads; the request context holds the span itself, not a
 * `Context`.
 *
 * It keeps the SDK's behaviour where a caller can see it: attributes set after `end()` are ignored,
 * values outside the API's `AttributeValue` types are not stored (the SDK 3.x now keeps any value;
 * nothing here sets one), at most 128 attributes, events and links (beyond, counted as
 * dropped, the oldest events and links make room), an OK status is final, UNSET is ignored, a
 * second `end()` does nothing, `isRecording()` is false once ended, and `recordException` writes
 * the semantic conventions' `exception` event. test/recorded-span.test.ts checks each against the
 * SDK's own span.
 */

/** What happens to every span when it ends: the OTLP export, the slow-request log. */
export interface SpanSink {
  onEnd(span: RecordedSpan): void;
  /** Sends or drops what is waiting; for the shutdown hook. */
  shutdown(): Promise<void>;
}

/** The SDK's default limits (OTEL_SPAN_*_COUNT_LIMIT), the same for attributes, events and links. */
export const SPAN_COUNT_LIMIT = 128;

/** An event of a span, as OTLP has it. */
export interface RecordedEvent {
  name: string;
  /** On `now()`'s clock. */
  time: number;
  attributes: Attributes;
  droppedAttributesCount: number;
}

/** A link of a span, as OTLP has it. */
export interface RecordedLink {
  context: SpanContext;
  attributes: Attributes;
  droppedAttributesCount: number;
}

/** Milliseconds on `performance.now()`'s clock: the clock of every span time here. */
const now = (): number => performance.now();

/** `performance.timeOrigin` (Unix ms, with a fraction) split once into whole and fraction. */
const ORIGIN_WHOLE = Math.floor(performance.timeOrigin);
const ORIGIN_FRACTION = performance.timeOrigin - ORIGIN_WHOLE;

/**
 * A time on `now()`'s clock as OTLP/JSON's decimal string of nanoseconds since the Unix epoch:
 * whole milliseconds and six more digits, without going through a number too large for a double
 * to hold exactly.
 */
export function unixNanosText(clockMs: number): string {
  const since = clockMs + ORIGIN_FRACTION;
  let whole = Math.floor(since);
  let nanos = Math.round((since - whole) * 1e6);
  if (nanos === 1e6) {
    whole++;
    nanos = 0;
  }
  // Spans ending close together share their millisecond: its digits are written once.
  if (whole !== lastWhole) {
    lastWhole = whole;
    lastWholeText = String(ORIGIN_WHOLE + whole);
  }
  const tail = String(nanos);
  return `${lastWholeText}${'000000'.slice(tail.length)}${tail}`;
}

let lastWhole = Number.NaN;
let lastWholeText = '';

/** `time` (Unix ms, `now()`'s clock, an HrTime or a Date, as the API allows) on `now()`'s clock. */
export function toClock(time: TimeInput | undefined): number {
  if (time === undefined) return now();
  if (typeof time === 'number') {
    // As the SDK reads a number: not later than now on performance.now()'s clock, it is on that
    // clock; otherwise Unix milliseconds.
    return time <= now() ? time : time - performance.timeOrigin;
  }
  if (time instanceof Date) return time.getTime() - performance.timeOrigin;
  const [seconds, nanos] = time;
  return seconds * 1e3 + nanos / 1e6 - performance.timeOrigin;
}

/** An OpenTelemetry attribute value: a primitive, or an array of one primitive type (or nulls). */
function isAttributeValue(value: unknown): value is AttributeValue {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return true;
    case 'object': {
      if (!Array.isArray(value)) return false;
      let type: string | undefined;
      for (const item of value as unknown[]) {
        if (item === null || item === undefined) continue;
        const itemType = typeof item;
        if (itemType !== 'string' && itemType !== 'number' && itemType !== 'boolean') return false;
        if (type === undefined) type = itemType;
        else if (type !== itemType) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** The valid attributes of `attributes`, at most SPAN_COUNT_LIMIT, and how many were left out. */
function cleanAttributes(attributes: Attributes | undefined): {
  attributes: Attributes;
  droppedAttributesCount: number;
} {
  const clean: Attributes = {};
  let count = 0;
  let dropped = 0;
  for (const key in attributes) {
    const value = attributes[key];
    if (!key || !isAttributeValue(value)) continue;
    if (count < SPAN_COUNT_LIMIT) {
      clean[key] = value;
      count++;
    } else dropped++;
  }
  return { attributes: clean, droppedAttributesCount: dropped };
}

/** Shared by every span without events or links (most spans): no two empty arrays per span. */
const NONE: never[] = Object.freeze([]) as unknown as never[];
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });

export class RecordedSpan implements Span {
  /** When it started and ended, on `now()`'s clock (ms); `endTime` means nothing until it ends. */
  readonly startTime: number;
  endTime = -1;
  /**
   * Its attributes. Those given at the start are kept as given, not copied (callers pass one
   * constant object for every span of a kind), until the first `setAttribute` copies them.
   */
  attributes: Attributes;
  droppedAttributesCount = 0;
  status: SpanStatus = UNSET;
  events: RecordedEvent[] = NONE;
  droppedEventsCount = 0;
  links: RecordedLink[] = NONE;
  droppedLinksCount = 0;
  private ownAttributes = false;
  private attributeCount: number;
  private ended = false;

  /**
   * @param context its own ids (and the trace's flags and state)
   * @param parentSpanId the span it is a child of, if any
   * @param parentIsRemote whether that span is in another process (the caller's)
   * @param attributes valid attributes, fewer than SPAN_COUNT_LIMIT (kept, not copied)
   * @param sinks told when it ends
   */
  constructor(
    public name: string,
    readonly kind: SpanKind,
    private readonly context: SpanContext,
    readonly parentSpanId: string | undefined,
    readonly parentIsRemote: boolean,
    attributes: Attributes,
    private readonly sinks: readonly SpanSink[],
    startTime?: TimeInput,
  ) {
    this.startTime = toClock(startTime);
    this.attributes = attributes;
    this.attributeCount = Object.keys(attributes).length;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  /**
   * Whether `attributes` is still the object it was started with (shared by every span of its
   * kind), so what is made of it can be kept for the next span (the exporter's encoding).
   */
  get attributesShared(): boolean {
    return !this.ownAttributes;
  }

  /** Whether it is the first span of its trace in this process (its parent is elsewhere, or none). */
  get isLocalRoot(): boolean {
    return this.parentSpanId === undefined || this.parentIsRemote;
  }

  /** How long it took (ms); -1 until it ends. */
  get durationMs(): number {
    return this.ended ? this.endTime - this.startTime : -1;
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (this.ended || !key || !isAttributeValue(value)) return this;
    if (!this.ownAttributes) {
      this.attributes = { ...this.attributes };
      this.ownAttributes = true;
    }
    if (!(key in this.attributes)) {
      if (this.attributeCount >= SPAN_COUNT_LIMIT) {
        this.droppedAttributesCount++;
        return this;
      }
      this.attributeCount++;
    }
    this.attributes[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    const isTime =
      typeof attributesOrTime === 'number' ||
      attributesOrTime instanceof Date ||
      Array.isArray(attributesOrTime);
    const at = isTime ? (time ?? attributesOrTime) : time;
    if (this.events === NONE) this.events = [];
    if (this.events.length >= SPAN_COUNT_LIMIT) {
      this.events.shift();
      this.droppedEventsCount++;
    }
    this.events.push({
      name,
      time: toClock(at),
      ...cleanAttributes(isTime ? undefined : attributesOrTime),
    });
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    if (this.links === NONE) this.links = [];
    if (this.links.length >= SPAN_COUNT_LIMIT) {
      this.links.shift();
      this.droppedLinksCount++;
    }
    this.links.push({ context: link.context, ...cleanAttributes(link.attributes) });
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.ended || status.code === SpanStatusCode.UNSET) return this;
    if (this.status.code === SpanStatusCode.OK) return this;
    this.status =
      status.code === SpanStatusCode.ERROR && typeof status.message === 'string'
        ? { code: status.code, message: status.message }
        : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    this.ended = true;
    this.endTime = Math.max(toClock(endTime), this.startTime);
    for (const sink of this.sinks) sink.onEnd(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes['exception.message'] = exception;
    else if (exception) {
      if (exception.code) attributes['exception.type'] = String(exception.code);
      else if (exception.name) attributes['exception.type'] = exception.name;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    if (attributes['exception.type'] || attributes['exception.message']) {
      this.addEvent('exception', attributes, time);
    }
  }
}
