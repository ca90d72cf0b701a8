import { sqlBuilder, statement, type Param } from '@repo/database/sql';
import type { DB } from '../src/data/generated/kysely/types';
import * as sql from '../src/data/queries';

/**
 * The raw SQL is typed against the tables schema.prisma declares: `pnpm typecheck` fails when a
 * statement names a column or table that is not there (the lines marked @ts-expect-error below
 * prove the check is on: if they stopped being errors, typecheck would fail on the marker).
 */
describe('typed SQL statements', () => {
  const db = sqlBuilder<DB>();

  it('refuses, at compile time, a column the schema does not have', () => {
    const broken = () =>
      statement('broken', (param: Param<{ id: string }>) =>
        db
          .selectFrom('products')
          // @ts-expect-error price is not a column of products (price_cents is)
          .select(['id', 'price'])
          .where('id', '=', param('id')),
      );
    expect(broken).toBeDefined();
    const wrongTable = () =>
      // @ts-expect-error there is no table "product"
      db.selectFrom('product').selectAll();
    expect(wrongTable).toBeDefined();
  });

  it('compiles each statement once, with its values in the right places', () => {
    expect(sql.productById.text).toBe(
      'select "id", "sku", "name", "price_cents" as "priceCents", "currency", "stock" from "products" where "id" = $1',
    );
    expect(sql.productById.query({ id: 'x' })).toEqual({
      name: 'product_by_id',
      text: sql.productById.text,
      values: ['x'],
    });
    // A constant of the statement stays in place; the arguments fill the rest.
    expect(sql.cancelOrder.values({ id: 'o', userId: 'u', from: ['PENDING'] })).toEqual([
      'CANCELLED',
      'o',
      'u',
      ['PENDING'],
    ]);
    expect(sql.releaseIdempotencyKey.values({ id: 'o' })).toEqual([null, 'o']);
  });

  it('gives every statement its own prepared-statement name', () => {
    const names = Object.values(sql).map((statement) => statement.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
