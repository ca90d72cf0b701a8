import {
  OrderStatus as ProtoOrderStatus,
  type Order as ProtoOrder,
  type OrderServiceServer,
  type Product as ProtoProduct,
} from '@repo/contracts/order/v1';
import type { UnaryHandlers } from '@repo/service-kit/grpc-server';
import type { Order, OrderStatus, Product } from '../domain/model';
import type { Catalog, Orders } from '../domain/orders';

export const STATUS: { readonly [status in OrderStatus]: ProtoOrderStatus } = {
  PENDING: ProtoOrderStatus.ORDER_STATUS_PENDING,
  CONFIRMED: ProtoOrderStatus.ORDER_STATUS_CONFIRMED,
  CANCELLED: ProtoOrderStatus.ORDER_STATUS_CANCELLED,
};

export function toProtoProduct(product: Product): ProtoProduct {
  return {
    id: product.id,
    sku: product.sku,
    name: product.name,
    priceCents: product.priceCents,
    currency: product.currency,
    stock: product.stock,
  };
}

export function toProtoOrder(order: Order): ProtoOrder {
  return {
    id: order.id,
    userId: order.userId,
    status: STATUS[order.status],
    items: order.items.map((item) => ({ ...item })),
    totalCents: order.totalCents,
    currency: order.currency,
    createTime: order.createdAt,
    updateTime: order.updatedAt,
  };
}

/** order.v1.OrderService: translation between the wire and the domain, nothing else. */
export function orderServiceHandlers(
  catalog: Catalog,
  orders: Orders,
): UnaryHandlers<OrderServiceServer> {
  return {
    listProducts: async (request) => {
      const page = await catalog.list(request.pageSize, request.pageToken);
      return { products: page.products.map(toProtoProduct), nextPageToken: page.nextPageToken };
    },
    getProduct: async (request) => ({ product: toProtoProduct(await catalog.get(request.id)) }),
    createOrder: async (request) => ({
      order: toProtoOrder(
        await orders.create({
          userId: request.userId,
          items: request.items,
          idempotencyKey: request.idempotencyKey,
        }),
      ),
    }),
    getOrder: async (request) => ({
      order: toProtoOrder(await orders.get(request.id, request.userId)),
    }),
    listOrders: async (request) => {
      const page = await orders.list(request.userId, request.pageSize, request.pageToken);
      return { orders: page.orders.map(toProtoOrder), nextPageToken: page.nextPageToken };
    },
    cancelOrder: async (request) => ({
      order: toProtoOrder(await orders.cancel(request.id, request.userId)),
    }),
  };
}
