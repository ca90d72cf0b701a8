import { querySummary } from '../src/sql';

describe('querySummary (the span name of a statement)', () => {
  it.each([
    ['select "id" from "users" where "id" = $1', 'SELECT users'],
    ['insert into "orders" ("user_id") values ($1) returning "id"', 'INSERT orders'],
    ['update "orders" set "status" = $1 where "id" = $2', 'UPDATE orders'],
    ['delete from "users" where "id" = $1', 'DELETE users'],
    // The main statement after a CTE, not the CTE's SELECT.
    [
      'with "locked" as (select "id" from "products" where "id" = any($1::uuid[]) for no key update) update "products" as "p" set "stock" = 1',
      'UPDATE products',
    ],
    // The main FROM, not a subquery's in the select list.
    [
      'select "o"."id", (select json_agg("i") from "order_items" as "i" where "i"."order_id" = "o"."id") as "items" from "orders" as "o" where "o"."id" = $1',
      'SELECT orders',
    ],
    // Prisma's queries name the schema too.
    [
      'SELECT "public"."orders"."id" FROM "public"."orders" WHERE "public"."orders"."user_id" = $1',
      'SELECT orders',
    ],
    // No table: the operation alone.
    ['select pg_try_advisory_xact_lock(hashtextextended($1, 0)) as "locked"', 'SELECT'],
  ])('%s -> %s', (sql, summary) => {
    expect(querySummary(sql).summary).toBe(summary);
  });
});
