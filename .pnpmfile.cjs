// pnpm install hooks (https://pnpm.io/pnpmfile). The lockfile records this file's checksum, so the
// Dockerfiles copy it next to the pruned lockfile before `pnpm install --frozen-lockfile`.
//
// @prisma/client declares `prisma` (the CLI) and `typescript` as optional peer dependencies, and
// prisma declares `typescript`. Both are in this workspace (the CLI generates the clients and
// applies migrations in development; TypeScript builds everything), so pnpm resolved those peers and
// made them dependencies of @prisma/client: `pnpm deploy --prod` then put the CLI, effect and
// TypeScript (about 100 MB) in every service's production tree. The generated clients need only
// @prisma/client's runtime, so these peers are dropped; the apps list the CLI and TypeScript as dev
// dependencies, which is where they belong.
const DROPPED_PEERS = {
  '@prisma/client': ['prisma', 'typescript'],
  prisma: ['typescript'],
};

module.exports = {
  hooks: {
    readPackage(pkg) {
      for (const peer of DROPPED_PEERS[pkg.name] ?? []) {
        if (pkg.peerDependencies) delete pkg.peerDependencies[peer];
        if (pkg.peerDependenciesMeta) delete pkg.peerDependenciesMeta[peer];
      }
      return pkg;
    },
  },
};
