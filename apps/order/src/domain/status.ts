import { DomainError } from '@repo/service-kit/errors';
import type { OrderStatus } from './model';

/**
 * The order lifecycle. Orders are created CONFIRMED: their stock is reserved in the same
 * transaction that writes them, and this system has no payment step. PENDING is the state a
 * payment step would hold orders in; the machine already allows it.
 */
export const INITIAL_STATUS: OrderStatus = 'CONFIRMED';

const TRANSITIONS: { readonly [from in OrderStatus]: readonly OrderStatus[] } = {
  PENDING: ['CONFIRMED', 'CANCELLED'],
  CONFIRMED: ['CANCELLED'],
  CANCELLED: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The statuses an order may be cancelled from. */
export const CANCELLABLE: readonly OrderStatus[] = (
  Object.keys(TRANSITIONS) as OrderStatus[]
).filter((from) => canTransition(from, 'CANCELLED'));

export function assertTransition(orderId: string, from: OrderStatus, to: OrderStatus): void {
  if (!canTransition(from, to)) {
    throw new DomainError(
      'FAILED_PRECONDITION',
      `order ${orderId} is ${from} and cannot become ${to}`,
    );
  }
}
