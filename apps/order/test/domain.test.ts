import { DomainError } from '@repo/service-kit/errors';
import type { Product } from '../src/domain/model';
import { priceOrder } from '../src/domain/pricing';
import { CANCELLABLE, INITIAL_STATUS, assertTransition, canTransition } from '../src/domain/status';
import { validateNewOrder } from '../src/domain/validation';

const USER = '6f1c2d3e-4a5b-4c6d-8e7f-000000000001';
const P1 = '0b7d3e4a-1c2f-4a5b-8c6d-000000000001';
const P2 = '0b7d3e4a-1c2f-4a5b-8c6d-000000000002';

function caught(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a DomainError');
}

describe('validateNewOrder', () => {
  const order = (items: { productId: string; quantity: number }[], idempotencyKey = '') =>
    validateNewOrder({ userId: USER, items, idempotencyKey });

  it('accepts a valid order and keeps lines in order', () => {
    expect(
      order(
        [
          { productId: P2, quantity: 1 },
          { productId: P1, quantity: 1000 },
        ],
        'key-1',
      ),
    ).toEqual({
      userId: USER,
      lines: [
        { productId: P2, quantity: 1, index: 0 },
        { productId: P1, quantity: 1000, index: 1 },
      ],
      idempotencyKey: 'key-1',
    });
  });

  it('merges lines naming the same product (in any case)', () => {
    const valid = order([
      { productId: P1, quantity: 2 },
      { productId: P2, quantity: 1 },
      { productId: P1.toUpperCase(), quantity: 3 },
    ]);
    expect(valid.lines).toEqual([
      { productId: P1, quantity: 5, index: 0 },
      { productId: P2, quantity: 1, index: 1 },
    ]);
  });

  it('refuses merged lines that add up to more than 1000', () => {
    const error = caught(() =>
      order([
        { productId: P1, quantity: 600 },
        { productId: P1, quantity: 401 },
      ]),
    );
    expect(error.violations).toEqual([
      expect.objectContaining({ field: 'items[0].quantity', reason: 'OUT_OF_RANGE' }),
    ]);
  });

  it.each([0, -1, 1001, 1.5, Number.NaN])('refuses the quantity %p', (quantity) => {
    const error = caught(() => order([{ productId: P1, quantity }]));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.violations.map((v) => v.field)).toEqual(['items[0].quantity']);
  });

  it('needs 1 to 50 lines', () => {
    expect(caught(() => order([])).violations.map((v) => v.field)).toEqual(['items']);
    const fifty = Array.from({ length: 50 }, () => ({ productId: P1, quantity: 1 }));
    expect(order(fifty).lines).toEqual([{ productId: P1, quantity: 50, index: 0 }]);
    expect(
      caught(() => order([...fifty, { productId: P2, quantity: 1 }])).violations.map(
        (v) => v.field,
      ),
    ).toEqual(['items']);
  });

  it('names every malformed field', () => {
    const error = caught(() =>
      validateNewOrder({
        userId: 'nope',
        items: [{ productId: 'junk', quantity: 0 }],
        idempotencyKey: 'has space',
      }),
    );
    expect(error.violations.map((v) => v.field)).toEqual([
      'user_id',
      'items[0].product_id',
      'items[0].quantity',
      'idempotency_key',
    ]);
  });

  it('limits idempotency keys to 100 printable characters', () => {
    expect(order([{ productId: P1, quantity: 1 }], 'k'.repeat(100)).idempotencyKey).toHaveLength(
      100,
    );
    expect(
      caught(() => order([{ productId: P1, quantity: 1 }], 'k'.repeat(101))).violations[0]?.field,
    ).toBe('idempotency_key');
  });
});

describe('priceOrder', () => {
  const product = (id: string, priceCents: number, currency = 'EUR'): Product => ({
    id,
    sku: `SKU-${priceCents}`,
    name: `Product ${priceCents}`,
    priceCents,
    currency,
    stock: 100,
  });

  it('prices from the catalog and totals in integer cents', () => {
    const products = new Map([
      [P1, product(P1, 1999)],
      [P2, product(P2, 5)],
    ]);
    const priced = priceOrder(
      [
        { productId: P1, quantity: 3 },
        { productId: P2, quantity: 7 },
      ],
      products,
    );
    expect(priced).toEqual({
      items: [
        { productId: P1, sku: 'SKU-1999', name: 'Product 1999', unitPriceCents: 1999, quantity: 3 },
        { productId: P2, sku: 'SKU-5', name: 'Product 5', unitPriceCents: 5, quantity: 7 },
      ],
      totalCents: 3 * 1999 + 7 * 5,
      currency: 'EUR',
    });
  });

  it('refuses to mix currencies', () => {
    const products = new Map([
      [P1, product(P1, 100, 'EUR')],
      [P2, product(P2, 100, 'USD')],
    ]);
    expect(
      caught(() =>
        priceOrder(
          [
            { productId: P1, quantity: 1 },
            { productId: P2, quantity: 1 },
          ],
          products,
        ),
      ).code,
    ).toBe('FAILED_PRECONDITION');
  });
});

describe('the order status machine', () => {
  it('creates orders CONFIRMED (stock is reserved in the same transaction)', () => {
    expect(INITIAL_STATUS).toBe('CONFIRMED');
  });

  it('allows PENDING -> CONFIRMED -> CANCELLED and PENDING -> CANCELLED', () => {
    expect(canTransition('PENDING', 'CONFIRMED')).toBe(true);
    expect(canTransition('PENDING', 'CANCELLED')).toBe(true);
    expect(canTransition('CONFIRMED', 'CANCELLED')).toBe(true);
  });

  it('never leaves CANCELLED and never goes back', () => {
    expect(canTransition('CANCELLED', 'CONFIRMED')).toBe(false);
    expect(canTransition('CANCELLED', 'PENDING')).toBe(false);
    expect(canTransition('CANCELLED', 'CANCELLED')).toBe(false);
    expect(canTransition('CONFIRMED', 'PENDING')).toBe(false);
    expect(caught(() => assertTransition('o1', 'CANCELLED', 'CANCELLED')).code).toBe(
      'FAILED_PRECONDITION',
    );
  });

  it('cancels from PENDING or CONFIRMED only', () => {
    expect([...CANCELLABLE].sort()).toEqual(['CONFIRMED', 'PENDING']);
  });
});
