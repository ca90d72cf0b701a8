import { randomUUID } from 'node:crypto';
import { Envelope } from '@repo/contracts/events/v1';

export { Envelope };

/** What a service says about an event; the rest of the envelope is filled in. */
export interface NewEvent {
  /** The payload's protobuf full name (see EventTypes in ./subjects). */
  type: string;
  /** The entity the event is about: events of one aggregate are delivered in order. */
  aggregateId: string;
  /** The event message, protobuf-encoded (e.g. `UserRegistered.encode(...).finish()`). */
  payload: Uint8Array;
  /** The producing service, e.g. "user". */
  source: string;
  /** W3C trace context of the request that caused it, if any. */
  traceparent?: string;
  tracestate?: string;
  /** Defaults to a new UUID. */
  id?: string;
  /** Defaults to now. */
  occurredAt?: Date;
}

/** A complete envelope for a new event: a fresh id, occurred now unless said otherwise. */
export function newEnvelope(event: NewEvent): Envelope {
  return {
    id: event.id ?? randomUUID(),
    type: event.type,
    aggregateId: event.aggregateId,
    occurredAt: event.occurredAt ?? new Date(),
    traceparent: event.traceparent ?? '',
    tracestate: event.tracestate ?? '',
    payload: Buffer.from(event.payload),
    source: event.source,
    sequence: 0,
  };
}

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return Envelope.encode(envelope).finish();
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  return Envelope.decode(bytes);
}
