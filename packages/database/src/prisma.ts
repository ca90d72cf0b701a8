import { PrismaPg } from '@prisma/adapter-pg';
import type { Pool, PoolClient, QueryConfig } from 'pg';
import type { PoolStats } from '@repo/service-kit/metrics';
import { SpanKind, endWithError, startChildSpan } from '@repo/service-kit/tracing';
import { createPool } from './pool';
import { queryAttributes } from './sql';

export interface DatabaseOptions {
  connectionString: string;
  /** Connections in the pg pool. */
  poolSize: number;
}

/**
 * A service's database access: one node-postgres pool, used by the service's Prisma client (through
 * the pg driver adapter: no native query engine) and, for the hottest queries, directly by its
 * repository (Prisma 6 compiles every query in WebAssembly, which profiling showed to be most of a
 * service's CPU on hot paths).
 */
export interface PrismaDatabase<C> {
  prisma: C;
  pool: Pool;
  /** The pool's connections now (for the db_pool_* gauges, read when scraped). */
  poolStats(): PoolStats;
  close(): Promise<void>;
}

/** `createClient` builds the service's own generated PrismaClient around the adapter. */
export function createPrismaDatabase<C extends { $disconnect(): Promise<void> }>(
  createClient: (adapter: PrismaPg) => C,
  options: DatabaseOptions,
): PrismaDatabase<C> {
  // A lost connection fails the statement on it, never the process (see createPool).
  const pool = createPool({
    connectionString: options.connectionString,
    max: options.poolSize,
    // Bounds both connecting and waiting for a free pooled connection: fail within 5 s when the
    // database is unreachable instead of queueing forever, but ride out short bursts.
    connectionTimeoutMillis: 5_000,
    // The relay's connection holds the outbox's advisory lock for as long as it lives: if the
    // database's host vanishes (no FIN, no RST), TCP keepalive ends it after 30 s idle plus the
    // kernel's probes (Linux: 9, 75 s apart), so a standby relay takes over within minutes instead
    // of the lock staying held until TCP gives up (hours). The delay is explicit: without it, Node
    // keeps the system's, two hours on Linux.
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
  });
  const prisma = createClient(new PrismaPg(tracedPool(pool)));
  return {
    prisma,
    pool,
    poolStats: () => ({
      inUse: pool.totalCount - pool.idleCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }),
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/** Span attributes per query text: Prisma sends a small set of texts, each summarised once. */
const attributesByText = new Map<string, ReturnType<typeof queryAttributes>>();
const MAX_REMEMBERED_TEXTS = 1_000;

function attributesOf(text: string): ReturnType<typeof queryAttributes> {
  let attributes = attributesByText.get(text);
  if (!attributes) {
    attributes = queryAttributes(text);
    if (attributesByText.size < MAX_REMEMBERED_TEXTS) attributesByText.set(text, attributes);
  }
  return attributes;
}

/** `query` with a span when the request being served is traced (see @repo/service-kit/tracing). */
function tracedQuery<Q extends (config: QueryConfig) => Promise<unknown>>(query: Q): Q {
  return (async (config: QueryConfig) => {
    // Nothing is summarised for a request that is not recorded: startChildSpan is the only cost.
    const traced = startChildSpan('query', SpanKind.CLIENT, {});
    if (!traced) return query(config);
    const attributes = attributesOf(config.text);
    traced.updateName(attributes['db.query.summary']);
    traced.setAttributes(attributes);
    try {
      const result = await query(config);
      traced.end();
      return result;
    } catch (error) {
      endWithError(traced, error);
      throw error;
    }
  }) as Q;
}

/**
 * The pool as Prisma's adapter sees it: the same pool (the adapter wants a `pg.Pool`, which a Proxy
 * of one is), whose queries, and those of the connections it lends for transactions, get the
 * database spans the typed statements of ./sql get. OpenTelemetry's pg instrumentation would patch
 * every query of the process, traced or not (see "Tracing" in the README for what it cost).
 */
function tracedPool(pool: Pool): Pool {
  const wrapClient = (client: PoolClient): PoolClient =>
    new Proxy(client, {
      get(target, property, receiver) {
        if (property === 'query') return tracedQuery(target.query.bind(target) as never);
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
  return new Proxy(pool, {
    get(target, property) {
      if (property === 'query') return tracedQuery(target.query.bind(target) as never);
      if (property === 'connect') {
        return async () => wrapClient(await target.connect());
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
}
