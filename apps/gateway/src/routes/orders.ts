import type { Backends } from '../backends';
import type { OrderStreams } from '../events/order-streams';
import { defineRoute, type AnyRoute } from '../http/route';
import { nextToken, pageRequest, presentOrder } from './present';
import {
  CreateOrderBody,
  IdParams,
  IdempotencyHeaders,
  Order,
  OrderEventStream,
  OrderList,
  PageQuery,
} from './schemas';

export function orderRoutes(backends: Backends, streams: OrderStreams): AnyRoute[] {
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
    // Before getOrder, whose `/v1/orders/:id` would take `events` for an id.
    defineRoute({
      operationId: 'streamOrderEvents',
      method: 'get',
      path: '/v1/orders/events',
      tag: 'orders',
      summary: "A live stream of the caller's order updates (Server-Sent Events)",
      description:
        'Server-Sent Events (`text/event-stream`): an `order.placed` or ' +
        "`order.cancelled` event, `id` being the event id, whenever one of the caller's orders is " +
        'placed or cancelled, from the moment the stream opens (there is no replay: `Last-Event-ID` ' +
        'is ignored; read `GET /v1/orders` after reconnecting to catch up). A `: heartbeat` comment ' +
        'comes every SSE_HEARTBEAT_MS (15 s by default) and a `retry:` hint first. The stream stays ' +
        'open until the client leaves or the gateway shuts down (reconnect then). Works with any ' +
        'number of gateway replicas: each one receives every order event. Answers 503 when the ' +
        'events broker is not reachable from this gateway, or when it holds SSE_MAX_STREAMS streams. ' +
        "A browser's `EventSource` cannot send the `Authorization` header: read the stream with " +
        '`fetch()` (or an SSE client that sends headers).',
      auth: true,
      status: 200,
      stream: true,
      response: {
        description: 'The event stream, open until the client leaves or the gateway shuts down.',
        mediaType: 'text/event-stream',
        schema: OrderEventStream,
        headers: {
          'X-Accel-Buffering': {
            description: 'Asks proxies (nginx) not to buffer the stream.',
            schema: { type: 'string', const: 'no' },
          },
        },
      },
      errors: {
        503:
          'The order event stream is unavailable from this gateway (the events broker is not ' +
          'reachable or not configured, or the gateway holds its maximum of streams, or it is ' +
          'shutting down): `detail` says which; retry after Retry-After.',
      },
      handle: ({ user, req, res }) => Promise.resolve(streams.open(user.id, req, res)),
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
