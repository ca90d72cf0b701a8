import { runWithContext } from './context';
import { endWithError, SpanKind, startServerSpan } from './tracing';

/** What handling an event needs to know of its envelope (@repo/events). */
export interface TracedEvent {
  id: string;
  type: string;
  traceparent: string;
  tracestate: string;
}

/**
 * Runs the handling of an event the way a gRPC call is served: in a request context whose request
 * id is the event id (so every log line names the event), inside a span of kind CONSUMER that
 * continues the trace of the request that wrote the event (its envelope's `traceparent`), so the
 * trace of `POST /v1/orders` goes on through the broker into whoever consumes OrderPlaced. The span
 * follows OpenTelemetry's messaging conventions ("process <type>").
 */
export async function withEventContext<T>(
  event: TracedEvent,
  handle: () => Promise<T>,
): Promise<T> {
  const carrier = event.traceparent
    ? { traceparent: event.traceparent, tracestate: event.tracestate }
    : {};
  const traced = startServerSpan(`process ${event.type}`, carrier, SpanKind.CONSUMER);
  const span = traced?.isRecording() ? traced : undefined;
  span?.setAttributes({
    'messaging.operation.type': 'process',
    'messaging.destination.name': `events.${event.type}`,
    'messaging.message.id': event.id,
  });
  return runWithContext({ requestId: event.id, trace: traced }, async () => {
    try {
      const result = await handle();
      span?.end();
      return result;
    } catch (error) {
      if (span) endWithError(span, error);
      throw error;
    }
  });
}
