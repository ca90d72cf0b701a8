import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type Compilable,
  type InferResult,
} from 'kysely';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { SpanKind, endWithError, startChildSpan } from '@repo/service-kit/tracing';

/** What a statement runs on: the pool, or one client (inside a transaction). */
export type Queryable = Pick<Pool | PoolClient, 'query'>;

/**
 * Typed SQL for the hot paths, with no cost per call.
 *
 * The services run their hottest statements on the pg pool directly (Prisma 6 compiles every query
 * in WebAssembly, most of a service's CPU on hot paths). Written as strings, those statements were
 * checked against the schema only by integration tests. Here they are written with Kysely against
 * the table types `prisma-kysely` generates from schema.prisma (the `kysely` generator in each
 * schema), so a renamed column or table fails `tsc`, and result rows are typed from the schema.
 *
 * Each statement is built and compiled once, at start-up, with named placeholders where its values
 * go; a call only fills in the values and sends it as a named prepared statement, exactly as the
 * hand-written string was sent. No query is built per request.
 */

/**
 * `SELECT products`, `UPDATE orders`: what a statement does to which table, for its span's name
 * (OpenTelemetry's `db.query.summary`). The main statement counts, not a CTE before it (`with
 * "locked" as (select ...) update "products" ...` is an UPDATE). Kysely quotes every identifier.
 */
export function querySummary(sql: string): { operation: string; table?: string; summary: string } {
  const cte = /^\s*with\b/i.test(sql) ? /\)\s*(select|insert|update|delete)\b/i.exec(sql) : null;
  const start = cte ? cte.index + cte[0].length - cte[1]!.length : 0;
  const main = sql.slice(start);
  const operation = (/^\s*(\w+)/.exec(main)?.[1] ?? 'QUERY').toUpperCase();
  // A table may be schema-qualified, as Prisma writes it: `"public"."products"` is `products`.
  const target = {
    SELECT: /\bfrom\s+(?:"[^"]+"\.)?"([^"]+)"/gi,
    INSERT: /^\s*insert\s+into\s+(?:"[^"]+"\.)?"([^"]+)"/gi,
    UPDATE: /^\s*update\s+(?:"[^"]+"\.)?"([^"]+)"/gi,
    DELETE: /^\s*delete\s+from\s+(?:"[^"]+"\.)?"([^"]+)"/gi,
  }[operation];
  const table = target && topLevelMatch(main, target);
  return table
    ? { operation, table, summary: `${operation} ${table}` }
    : { operation, summary: operation };
}

/** A query's span attributes (OpenTelemetry's database conventions), from its text. */
export function queryAttributes(
  sql: string,
): Record<string, string> & { 'db.query.summary': string } {
  const { operation, table, summary } = querySummary(sql);
  return {
    'db.system.name': 'postgresql',
    'db.operation.name': operation,
    ...(table === undefined ? {} : { 'db.collection.name': table }),
    'db.query.summary': summary,
    'db.query.text': sql,
  };
}

/** The first capture of `pattern` outside parentheses (not in a subquery of the select list). */
function topLevelMatch(sql: string, pattern: RegExp): string | undefined {
  for (const match of sql.matchAll(pattern)) {
    const before = sql.slice(0, match.index);
    if (before.split('(').length === before.split(')').length) return match[1];
  }
  return undefined;
}

/** A Kysely that compiles PostgreSQL and never connects: only for building statements. */
export function sqlBuilder<DB>(): Kysely<DB> {
  return new Kysely<DB>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new DummyDriver(),
      createIntrospector: (db) => new PostgresIntrospector(db),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  });
}

const PLACEHOLDER = Symbol('placeholder');
interface Placeholder {
  [PLACEHOLDER]: string;
}
const isPlaceholder = (value: unknown): value is Placeholder =>
  typeof value === 'object' && value !== null && PLACEHOLDER in value;

/** Where a value of the statement goes; typed as the value, so the builder type-checks it. */
export type Param<Args> = <K extends keyof Args & string>(name: K) => Args[K];

/** A statement compiled once; `values(args)` puts a call's values where its placeholders were. */
export interface Statement<Row extends QueryResultRow, Args> {
  /** The prepared statement's name, unique per connection. */
  readonly name: string;
  readonly text: string;
  values(args: Args): unknown[];
  /** The statement with these values, as pg takes it. */
  query(args: Args): { name: string; text: string; values: unknown[] };
  /** Runs it on a pool or a client (in a transaction, say), with the rows typed. */
  run(on: Queryable, args: Args): Promise<QueryResult<Row>>;
  /** Only for typing: the row type. */
  readonly row?: Row;
}

/**
 * Compiles `build(param)` once. `param('id')` marks where `args.id` goes; every other value in the
 * statement is a constant of the statement.
 */
export function statement<Args extends Record<string, unknown>, Q extends Compilable<unknown>>(
  name: string,
  build: (param: Param<Args>) => Q,
): Statement<InferResult<Q>[number] & QueryResultRow, Args> {
  const param = ((key: string) => ({ [PLACEHOLDER]: key })) as unknown as Param<Args>;
  const compiled = build(param).compile();
  // For each parameter of the compiled statement: the argument's name, or its constant value.
  const slots: { arg?: string; constant?: unknown }[] = compiled.parameters.map((value) =>
    isPlaceholder(value) ? { arg: value[PLACEHOLDER] } : { constant: value },
  );
  const values = (args: Args) =>
    slots.map((slot) => (slot.arg === undefined ? slot.constant : args[slot.arg]));
  // Its span, named and described once (OpenTelemetry's database conventions).
  const attributes = { ...queryAttributes(compiled.sql), 'db.statement.name': name };
  const summary = attributes['db.query.summary'];
  return {
    name,
    text: compiled.sql,
    values,
    query: (args) => ({ name, text: compiled.sql, values: values(args) }),
    run: (on, args) => {
      const traced = startChildSpan(summary, SpanKind.CLIENT, attributes);
      const running = on.query<InferResult<Q>[number] & QueryResultRow>({
        name,
        text: compiled.sql,
        values: values(args),
      });
      if (!traced) return running;
      return running.then(
        (result) => {
          traced.end();
          return result;
        },
        (error: unknown) => {
          endWithError(traced, error);
          throw error;
        },
      );
    },
  };
}
