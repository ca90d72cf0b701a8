# syntax=docker/dockerfile:1
# Every app's image, one app per image: APP names it (apps/<APP>). What differs between the apps
# comes from its manifest (apps/<APP>/package.json's `service`), as build arguments that
# docker-compose.yml passes (the deploy test checks them against the manifest). Build from the
# repository root:
#   docker build --build-arg APP=order --build-arg PORT=50052 --build-arg METRICS_PORT=9102 \
#     --build-arg NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=64" -t reference/order .
#   docker build --build-arg APP=order --target migrate -t reference/order-migrate .   # its migration job
# (`docker compose build` does both for every app.)

ARG NODE_IMAGE=node:24.22-bookworm-slim

FROM ${NODE_IMAGE} AS base
RUN npm install -g pnpm@12.4.2 turbo@2.11.11
WORKDIR /repo

# 1. Only what @repo/<APP> needs: its package, its workspace dependencies and a pruned lockfile.
FROM base AS pruner
ARG APP
RUN test -n "$APP" || { echo 'name the app: --build-arg APP=<a directory of apps/>' >&2; exit 1; }
COPY . .
RUN turbo prune @repo/${APP} --docker

# 2. Install from the pruned manifests first (a cached layer while dependencies do not change),
#    then copy the sources, generate, build, and deploy the app with production dependencies only.
FROM base AS builder
ARG APP
COPY --from=pruner /repo/out/json/ .
# The install hooks the lockfile was made with (turbo prune leaves them out; see .pnpmfile.cjs).
COPY --from=pruner /repo/.pnpmfile.cjs ./.pnpmfile.cjs
RUN pnpm install --frozen-lockfile
COPY --from=pruner /repo/out/full/ .
# Not workspace packages, so `turbo prune` leaves them out; the build needs both.
COPY --from=pruner /repo/proto ./proto
COPY --from=pruner /repo/tsconfig.base.json ./tsconfig.base.json
RUN turbo run build --filter=@repo/${APP}
RUN pnpm --filter @repo/${APP} deploy --prod /app

# 3. For an app with a database, its migration job's directory: the app with its dev dependencies,
#    among them the Prisma CLI that `prisma migrate deploy` needs and the service does not. A stage
#    of its own, so that building the service (the default target) skips it.
FROM builder AS migrate-builder
ARG APP
RUN pnpm --filter @repo/${APP} deploy /migrate

# 4. The migration job (`--target migrate`): applies the committed migrations to DATABASE_URL and
#    exits. Run it before the service starts (compose's <app>-migrate does).
FROM ${NODE_IMAGE} AS migrate
ENV NODE_ENV=production
WORKDIR /app
COPY --from=migrate-builder --chown=node:node /migrate .
USER node
CMD ["node_modules/.bin/prisma", "migrate", "deploy"]

# 5. The runtime image (the default target): compiled JavaScript and production dependencies only
#    (no Prisma CLI, TypeScript or embedded PostgreSQL), run as a non-root user. A service needs
#    DATABASE_URL, and a database the migrate image has migrated.
FROM ${NODE_IMAGE} AS runner
# The manifest's nodeOptions: heap limits that keep the process under 150 MB RSS under load
# (measured by `pnpm bench`; see PRODUCTION_NODE_OPTIONS in tooling/system/src/system.ts).
ARG NODE_OPTIONS
# Its API port, and a gRPC service's METRICS_PORT (none for the gateway: its metrics are on its API's).
ARG PORT
ARG METRICS_PORT
ENV NODE_ENV=production
ENV NODE_OPTIONS="${NODE_OPTIONS}"
WORKDIR /app
COPY --from=builder --chown=node:node /app .
USER node
EXPOSE ${PORT} ${METRICS_PORT}
# With no argument, the probe reads the app's manifest from /app/package.json: gRPC health for a
# service, GET /healthz for the gateway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "node_modules/@repo/service-kit/dist/health-probe.js"]
CMD ["node", "dist/main.js"]
