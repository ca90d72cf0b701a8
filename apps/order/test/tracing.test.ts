import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@repo/database/testing';
import { runWithContext } from '@repo/service-kit/context';
import { createLogger } from '@repo/service-kit/logger';
import { setupTracing, startServerSpan, type Tracing } from '@repo/service-kit/tracing';
import { PrismaOrderRepository } from '../src/data/order-repository';
import { createDatabase, type Database } from '../src/data/prisma';

/**
 * Every database query of a traced request is a span, the ones Prisma sends as well as the typed
 * statements (@repo/database: prisma.ts gives Prisma's adapter a traced view of the pool).
 */
describe('database spans', () => {
  let database: TestDatabase;
  let db: Database;
  let tracing: Tracing;
  const lines: { msg: string }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDatabase({ connectionString: database.url, poolSize: 2 });
    const logger = createLogger({
      name: 'test',
      level: 'info',
      pretty: false,
      destination: { write: (line: string) => lines.push(JSON.parse(line) as { msg: string }) },
    });
    // The slow-request log (every request is slow at 0 ms) prints each request's span tree.
    tracing = setupTracing(
      { OTEL_SERVICE_NAME: 'test', OTEL_TRACES_SAMPLER_ARG: 0, TRACE_SLOW_MS: 0 },
      logger,
    );
  });

  afterAll(async () => {
    await tracing.shutdown();
    await db.close();
    await database.drop();
  });

  it("has a span for each of Prisma's queries, named by operation and table", async () => {
    const repository = new PrismaOrderRepository(db);
    const served = startServerSpan('GET /v1/orders', {})!;
    await runWithContext({ requestId: 'r-1', trace: served }, async () => {
      await repository.listOrders(randomUUID(), undefined, 10); // Prisma
      await repository.findProduct(randomUUID()); // a typed statement
    });
    served.end();
    const slow = lines.filter((line) => line.msg.startsWith('slow: GET /v1/orders'));
    expect(slow).toHaveLength(1);
    // Prisma reads the orders, then their lines; the product is one typed statement.
    expect(slow[0]!.msg).toMatch(
      / > \[pg SELECT orders [\d.]+ ms, pg SELECT order_items [\d.]+ ms, pg SELECT products [\d.]+ ms\]$/,
    );
  });

  it('records nothing for a query outside a request', async () => {
    lines.length = 0;
    await new PrismaOrderRepository(db).listOrders(randomUUID(), undefined, 10);
    expect(lines).toEqual([]);
  });
});
