// The events the order service publishes, as protobuf messages (proto/order/v1/events.proto).
// The repository writes them to the outbox in the transaction of the change they describe.
import { CancellationReason, OrderCancelled, OrderPlaced } from '@repo/contracts/order/v1/events';
import type { NewEvent } from '@repo/events/envelope';
import { appendEvent, type Queryable } from '@repo/events/outbox';
import { EventTypes } from '@repo/events/subjects';
import { currentTraceHeaders } from '@repo/service-kit/tracing';
import type { Order, OrderStatus } from '../domain/model';
import { STATUS } from '../transport/grpc';

type OrderEvent = Pick<NewEvent, 'type' | 'aggregateId' | 'payload'>;

export function orderPlaced(order: Order): OrderEvent {
  return {
    type: EventTypes.OrderPlaced,
    aggregateId: order.id,
    payload: OrderPlaced.encode({
      orderId: order.id,
      userId: order.userId,
      items: order.items,
      totalCents: order.totalCents,
      currency: order.currency,
      status: STATUS[order.status],
    }).finish(),
  };
}

export interface Cancellation {
  orderId: string;
  userId: string;
  previousStatus: OrderStatus;
  reason: 'user-requested' | 'user-deleted';
}

export function orderCancelled(cancellation: Cancellation): OrderEvent {
  return {
    type: EventTypes.OrderCancelled,
    aggregateId: cancellation.orderId,
    payload: OrderCancelled.encode({
      orderId: cancellation.orderId,
      userId: cancellation.userId,
      previousStatus: STATUS[cancellation.previousStatus],
      reason:
        cancellation.reason === 'user-deleted'
          ? CancellationReason.CANCELLATION_REASON_USER_DELETED
          : CancellationReason.CANCELLATION_REASON_USER_REQUESTED,
    }).finish(),
  };
}

/** Writes the event to the outbox on `tx`, with the trace context of the work causing it. */
export function publishInTransaction(tx: Queryable, event: OrderEvent): Promise<bigint> {
  return appendEvent(tx, { ...event, source: 'order', ...currentTraceHeaders() });
}
