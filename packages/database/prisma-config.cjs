// The Prisma CLI configuration every service shares (each app's prisma.config.ts passes it to
// `defineConfig`). Plain CommonJS, not built: the apps' `prisma generate` runs before this package
// is built. The CLI runs its schema engine as WebAssembly through the pg driver adapter, so
// `prisma generate` and `prisma migrate deploy` need no native engine download (our build machines
// reach only the npm registry). Pointing the native-engine variables at an existing file (the
// app's config) stops the CLI from trying to fetch them.
const { PrismaPg } = require('@prisma/adapter-pg');

/** @param {string} configFile the app's prisma.config.ts (`__filename`) */
function prismaCliConfig(configFile) {
  process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= configFile;
  process.env.PRISMA_QUERY_ENGINE_LIBRARY ??= configFile;
  return {
    experimental: { adapter: true },
    engine: 'js',
    schema: 'prisma/schema.prisma',
    migrations: { path: 'prisma/migrations' },
    adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
  };
}

module.exports = { prismaCliConfig };
