// Prisma CLI configuration. The CLI runs its schema engine as WebAssembly through the pg driver
// adapter, so `prisma generate` and `prisma migrate deploy` need no native engine download (our
// build machines reach only the npm registry). Pointing the native-engine variables at this file
// stops the CLI from trying to fetch them.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= __filename;
process.env.PRISMA_QUERY_ENGINE_LIBRARY ??= __filename;

import { PrismaPg } from '@prisma/adapter-pg';
import { defineConfig } from 'prisma/config';

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
});
