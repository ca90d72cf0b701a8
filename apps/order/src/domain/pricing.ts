import { DomainError } from '@repo/service-kit/errors';
import type { OrderItem, Product } from './model';
import type { OrderLineInput } from './validation';

export interface PricedOrder {
  items: OrderItem[];
  totalCents: number;
  currency: string;
}

/**
 * Prices order lines from the catalog: never from the caller. Each line copies the product's sku,
 * name and current price; the total is the sum of unit price x quantity, in integer cents.
 * `products` must hold every product the lines name (the caller reports unknown ones first).
 */
export function priceOrder(
  lines: readonly OrderLineInput[],
  products: ReadonlyMap<string, Product>,
): PricedOrder {
  const items = lines.map((line): OrderItem => {
    const product = products.get(line.productId);
    if (!product) throw new Error(`priceOrder: product ${line.productId} was not loaded`);
    return {
      productId: product.id,
      sku: product.sku,
      name: product.name,
      unitPriceCents: product.priceCents,
      quantity: line.quantity,
    };
  });
  const currencies = new Set(items.map((item) => products.get(item.productId)!.currency));
  if (currencies.size !== 1) {
    throw new DomainError('FAILED_PRECONDITION', 'the products are priced in different currencies');
  }
  const totalCents = items.reduce((sum, item) => sum + item.unitPriceCents * item.quantity, 0);
  if (!Number.isSafeInteger(totalCents))
    throw new DomainError('INVALID_ARGUMENT', 'the order total is too large');
  return { items, totalCents, currency: [...currencies][0]! };
}
