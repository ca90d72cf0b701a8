// Prisma CLI configuration: the one every service shares (@repo/database/prisma-config says why).
import { prismaCliConfig } from '@repo/database/prisma-config';
import { defineConfig } from 'prisma/config';

export default defineConfig(prismaCliConfig(__filename));
