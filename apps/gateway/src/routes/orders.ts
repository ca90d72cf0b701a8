import type { Backends } from '../backends';
import { defineRoute, type AnyRoute } from '../http/route';
import { nextToken, pageRequest, presentOrder } from './present';
import {
  CreateOrderBody,
  IdParams,
  IdempotencyHeaders,
  Order,
  OrderList,
  PageQuery,
} from './schemas';

export function orderRoutes(backends: Backends): AnyRoute[] {
  return [
    defineRoute({
      operationId: 'createOrder',
      method: 'post',
      path: '/v1/orders',
      tag: 'orders',
      summary: 'Place an order',
      description:
        'Prices come from the catalog and stock is reserved atomically. Lines naming the same product are merged. ' +
        'With an Idempotency-Key, a retry of the same request returns the order the first call placed (for 24 hours); ' +
        'the same key with a different request is refused with 422, and while the first call is still running with 409.',
      auth: true,
      body: CreateOrderBody,
      headers: IdempotencyHeaders,
      status: 201,
      response: { description: 'The order.', schema: Order },
      location: '/v1/orders/{id}',
      errors: {
        409: 'Not enough stock, the order conflicts with the current state, or a request with this Idempotency-Key is still in progress.',
        422: 'This Idempotency-Key was already used with a different request.',
      },
      handle: async ({ body, headers, user }) =>
        presentOrder(
          (
            await backends.orders.createOrder({
              userId: user.id,
              items: body.items,
              idempotencyKey: headers['idempotency-key'] ?? '',
            })
          ).order,
        ),
    }),
    defineRoute({
      operationId: 'listOrders',
      method: 'get',
      path: '/v1/orders',
      tag: 'orders',
      summary: "The caller's orders, newest first",
      description:
        'A page of the orders the caller placed; follow `nextPageToken` for the next one.',
      auth: true,
      query: PageQuery,
      status: 200,
      response: { description: 'A page of orders.', schema: OrderList },
      handle: async ({ query, user }) => {
        const page = await backends.orders.listOrders({ userId: user.id, ...pageRequest(query) });
        return {
          orders: page.orders.map(presentOrder),
          nextPageToken: nextToken(page.nextPageToken),
        };
      },
    }),
    defineRoute({
      operationId: 'getOrder',
      method: 'get',
      path: '/v1/orders/:id',
      tag: 'orders',
      summary: 'One of the caller’s orders',
      description: "An order the caller placed; another user's order is 404, as an unknown one is.",
      auth: true,
      params: IdParams,
      status: 200,
      response: { description: 'The order.', schema: Order },
      errors: { 404: "No such order (also for another user's order)." },
      handle: async ({ params, user }) =>
        presentOrder((await backends.orders.getOrder({ id: params.id, userId: user.id })).order),
    }),
    defineRoute({
      operationId: 'cancelOrder',
      method: 'post',
      path: '/v1/orders/:id/cancel',
      tag: 'orders',
      summary: 'Cancel one of the caller’s orders and return its stock',
      description: 'Cancels the order and puts its quantities back in stock, in one transaction.',
      auth: true,
      params: IdParams,
      status: 200,
      response: { description: 'The cancelled order.', schema: Order },
      errors: { 404: 'No such order.', 409: 'The order is already cancelled.' },
      handle: async ({ params, user }) =>
        presentOrder((await backends.orders.cancelOrder({ id: params.id, userId: user.id })).order),
    }),
  ];
}
