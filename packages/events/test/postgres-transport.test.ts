import { createPostgresTransport } from '../src/postgres';
import { transportContract } from './transport-contract';
import { createDatabase } from './helpers';

describe('PostgreSQL transport (broker database of its own)', () => {
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await drop?.();
  });

  transportContract(async () => {
    const database = await createDatabase();
    drop = database.drop;
    return {
      prefix: 'events',
      open: () => createPostgresTransport({ url: database.url, pollMs: 100 }),
    };
  });
});
