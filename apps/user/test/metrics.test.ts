import type { PoolClient } from 'pg';
import { createTestDatabase, type TestDatabase } from '@repo/database/testing';
import { createRegistry, dbPoolMetrics } from '@repo/service-kit/metrics';
import { createDatabase, type Database } from '../src/data/prisma';

/** The database pool gauges against a real PostgreSQL: what a scrape sees as the pool fills up. */
describe('database pool metrics', () => {
  let database: TestDatabase;
  let db: Database;
  const registry = createRegistry();

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDatabase({ connectionString: database.url, poolSize: 2 });
    dbPoolMetrics(registry, () => db.poolStats());
  });

  afterAll(async () => {
    await db.close();
    await database.drop();
  });

  const scrape = async () => {
    const text = await registry.metrics();
    const value = (series: string) =>
      Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    return {
      inUse: value('db_pool_connections{state="in_use"}'),
      idle: value('db_pool_connections{state="idle"}'),
      waiting: value('db_pool_waiting_requests'),
    };
  };

  it('counts connections in use, idle, and queries waiting for one, when scraped', async () => {
    expect(await scrape()).toEqual({ inUse: 0, idle: 0, waiting: 0 });

    const held: PoolClient[] = [await db.pool.connect(), await db.pool.connect()];
    expect(await scrape()).toEqual({ inUse: 2, idle: 0, waiting: 0 });

    // The pool (2) is exhausted: this query waits for a connection.
    const waiting = db.pool.query('SELECT 1 AS one');
    expect(await scrape()).toEqual({ inUse: 2, idle: 0, waiting: 1 });

    held[0]!.release();
    expect((await waiting).rows).toEqual([{ one: 1 }]);
    held[1]!.release();
    expect(await scrape()).toEqual({ inUse: 0, idle: 2, waiting: 0 });
  });
});
