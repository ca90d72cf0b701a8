import {
  OrderStatus as ProtoOrderStatus,
  type Order,
  type OrderItem,
  type Product,
} from '@repo/contracts/order/v1';
import type { User } from '@repo/contracts/user/v1';
import type { z } from 'zod';
import type * as schemas from './schemas';

/** Wire (gRPC) messages -> the public JSON shapes. Never passes through anything unlisted. */

const iso = (date: Date | undefined) => (date ?? new Date(0)).toISOString();

export const presentUser = (user: User | undefined): z.input<typeof schemas.User> => ({
  id: user?.id ?? '',
  email: user?.email ?? '',
  name: user?.name ?? '',
  createdAt: iso(user?.createTime),
});

export const presentProduct = (product: Product | undefined): z.input<typeof schemas.Product> => ({
  id: product?.id ?? '',
  sku: product?.sku ?? '',
  name: product?.name ?? '',
  priceCents: product?.priceCents ?? 0,
  currency: product?.currency ?? '',
  stock: product?.stock ?? 0,
});

const STATUS: Record<ProtoOrderStatus, z.input<typeof schemas.OrderStatus>> = {
  [ProtoOrderStatus.ORDER_STATUS_UNSPECIFIED]: 'PENDING',
  [ProtoOrderStatus.ORDER_STATUS_PENDING]: 'PENDING',
  [ProtoOrderStatus.ORDER_STATUS_CONFIRMED]: 'CONFIRMED',
  [ProtoOrderStatus.ORDER_STATUS_CANCELLED]: 'CANCELLED',
  [ProtoOrderStatus.UNRECOGNIZED]: 'PENDING',
};

export const presentStatus = (status: ProtoOrderStatus): z.input<typeof schemas.OrderStatus> =>
  STATUS[status];

export const presentItem = (item: OrderItem): z.input<typeof schemas.Order>['items'][number] => ({
  productId: item.productId,
  sku: item.sku,
  name: item.name,
  quantity: item.quantity,
  unitPriceCents: item.unitPriceCents,
});

export const presentOrder = (order: Order | undefined): z.input<typeof schemas.Order> => ({
  id: order?.id ?? '',
  userId: order?.userId ?? '',
  status: presentStatus(order?.status ?? ProtoOrderStatus.ORDER_STATUS_UNSPECIFIED),
  items: (order?.items ?? []).map(presentItem),
  totalCents: order?.totalCents ?? 0,
  currency: order?.currency ?? '',
  createdAt: iso(order?.createTime),
});

/** Paging in both directions: absent query parameters are gRPC's defaults (0 and ''). */
export const pageRequest = (query: { pageSize?: number; pageToken?: string }) => ({
  pageSize: query.pageSize ?? 0,
  pageToken: query.pageToken ?? '',
});

/** gRPC uses '' for "no more pages"; the JSON API uses null. */
export const nextToken = (token: string) => (token === '' ? null : token);
