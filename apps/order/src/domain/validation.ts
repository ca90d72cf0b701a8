import { isUuid } from '@repo/service-kit/ids';
import { DomainError, type FieldViolation } from '@repo/service-kit/errors';
import { idempotencyKeyViolation } from '@repo/service-kit/idempotency';

export const MAX_LINES = 50;
export const MAX_QUANTITY = 1000;

export interface OrderLineInput {
  productId: string;
  quantity: number;
}

export interface NewOrderInput {
  userId: string;
  items: readonly OrderLineInput[];
  idempotencyKey: string;
}

export interface ValidLine extends OrderLineInput {
  /** Index of the first request line naming this product, for error messages. */
  index: number;
}

export interface ValidNewOrder {
  userId: string;
  /** One line per product (duplicates merged), in the order first seen. */
  lines: ValidLine[];
  idempotencyKey: string | undefined;
}

/**
 * Checks a CreateOrder request and reports every bad field at once. Lines naming the same product
 * are merged (quantities added); the merged quantity must still be within 1..1000.
 */
export function validateNewOrder(input: NewOrderInput): ValidNewOrder {
  const violations: FieldViolation[] = [];
  if (!isUuid(input.userId)) {
    violations.push({ field: 'user_id', description: 'must be a UUID', reason: 'INVALID_FORMAT' });
  }
  if (input.items.length === 0) {
    violations.push({
      field: 'items',
      description: 'must hold at least one line',
      reason: 'REQUIRED',
    });
  } else if (input.items.length > MAX_LINES) {
    violations.push({
      field: 'items',
      description: `must hold at most ${MAX_LINES} lines`,
      reason: 'TOO_MANY',
    });
  }
  const merged = new Map<string, { quantity: number; firstIndex: number }>();
  input.items.forEach((item, index) => {
    const productId = item.productId.toLowerCase();
    if (!isUuid(productId)) {
      violations.push({
        field: `items[${index}].product_id`,
        description: 'must be a UUID',
        reason: 'INVALID_FORMAT',
      });
    }
    if (!Number.isInteger(item.quantity) || item.quantity < 1 || item.quantity > MAX_QUANTITY) {
      violations.push({
        field: `items[${index}].quantity`,
        description: `must be between 1 and ${MAX_QUANTITY}`,
        reason: 'OUT_OF_RANGE',
      });
      return;
    }
    const line = merged.get(productId);
    if (line) line.quantity += item.quantity;
    else merged.set(productId, { quantity: item.quantity, firstIndex: index });
  });
  for (const [productId, line] of merged) {
    if (line.quantity > MAX_QUANTITY && isUuid(productId)) {
      violations.push({
        field: `items[${line.firstIndex}].quantity`,
        description: `lines for product ${productId} add up to ${line.quantity}, more than ${MAX_QUANTITY}`,
        reason: 'OUT_OF_RANGE',
      });
    }
  }
  const key = input.idempotencyKey;
  const keyViolation = idempotencyKeyViolation(key);
  if (keyViolation) violations.push(keyViolation);
  if (violations.length > 0) throw DomainError.invalid(violations);
  return {
    userId: input.userId.toLowerCase(),
    lines: [...merged].map(([productId, line]) => ({
      productId,
      quantity: line.quantity,
      index: line.firstIndex,
    })),
    idempotencyKey: key === '' ? undefined : key,
  };
}
