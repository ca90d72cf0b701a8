import type { PrismaPg } from '@prisma/adapter-pg';

/** The Prisma CLI configuration of a service's prisma.config.ts (see prisma-config.cjs). */
export declare function prismaCliConfig(configFile: string): {
  experimental: { adapter: true };
  engine: 'js';
  schema: string;
  migrations: { path: string };
  adapter: () => Promise<PrismaPg>;
};
