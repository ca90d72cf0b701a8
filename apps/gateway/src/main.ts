// Composition root of the gateway: config -> logger -> backends (gRPC clients) -> tokens -> order
// event streams (events broker) -> Express app -> HTTP server, with graceful shutdown.
import { randomBytes } from 'node:crypto';
import { connectTransport } from '@repo/events/connect';
import { drainDelayMs } from '@repo/service-kit/config';
import { createLogger } from '@repo/service-kit/logger';
import { onShutdownSignal } from '@repo/service-kit/shutdown';
import { exitOnStartupError } from '@repo/service-kit/startup';
import { setupTracing } from '@repo/service-kit/tracing';
import { createApp } from './app';
import { TokenService } from './auth/tokens';
import { createBackends } from './backends';
import { loadConfig } from './config';
import { OrderStreams } from './events/order-streams';
import { RedisRateLimitStore } from './http/rate-limit-redis';
import { createHttpServer } from './http/server';
import { createMetrics } from './metrics';

const config = loadConfig(process.env);
const logger = createLogger({
  name: 'gateway',
  level: config.LOG_LEVEL,
  pretty: config.NODE_ENV === 'development',
});
const tracing = setupTracing(config, logger);

async function main(): Promise<void> {
  let secret = config.JWT_SECRET;
  if (!secret) {
    // Only outside production (the config refuses to start production without one).
    secret = randomBytes(32).toString('base64url');
    logger.warn('JWT_SECRET is not set: using a random secret; tokens will not survive a restart');
  }
  const metrics = createMetrics();
  const backends = createBackends({
    userAddress: config.USER_SERVICE_ADDR,
    orderAddress: config.ORDER_SERVICE_ADDR,
    // pnpm gen service: service addresses above this line
    deadlineMs: config.BACKEND_DEADLINE_MS,
    metrics,
  });
  const tokens = new TokenService({
    secret,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    ttlSeconds: config.JWT_TTL_SECONDS,
  });
  // Counts shared by every gateway replica, when there is a Redis to share them in. A Redis that is
  // down does not keep the gateway from starting (fail-open): it waits at most a second for it.
  const rateLimitStore =
    config.REDIS_URL && config.RATE_LIMIT_MAX > 0
      ? new RedisRateLimitStore({
          url: config.REDIS_URL,
          keyPrefix: config.RATE_LIMIT_KEY_PREFIX,
          timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
          logger,
          onError: () => metrics.countRateLimitStoreError(),
        })
      : undefined;
  await rateLimitStore?.connected();
  // Live order events: connected in the background, so a broker that is down (or not configured)
  // only makes GET /v1/orders/events answer 503; start-up and /readyz do not wait for it.
  const orderStreams = new OrderStreams({
    logger,
    heartbeatMs: config.SSE_HEARTBEAT_MS,
    maxStreams: config.SSE_MAX_STREAMS,
  });
  if (config.EVENTS_TRANSPORT === 'postgres' && !config.EVENTS_DATABASE_URL) {
    orderStreams.disable(
      'EVENTS_DATABASE_URL is not set (the gateway has no database of its own: with ' +
        'EVENTS_TRANSPORT=postgres it must name the broker database)',
    );
  } else {
    orderStreams.start(() => connectTransport(config, { name: 'gateway' }));
  }
  const gateway = createApp({
    backends,
    tokens,
    metrics,
    logger,
    bodyLimitBytes: config.BODY_LIMIT_BYTES,
    routeDeadlineMs: config.ROUTE_DEADLINE_MS,
    rateLimit: {
      max: config.RATE_LIMIT_MAX,
      windowMs: config.RATE_LIMIT_WINDOW_MS,
      store: rateLimitStore,
    },
    corsOrigins: config.CORS_ORIGINS,
    trustProxyHops: config.TRUST_PROXY_HOPS,
    orderStreams,
  });

  // Slow clients cannot hold sockets for long (timeouts enforced within a second of their expiry).
  const server = createHttpServer(gateway.app);

  onShutdownSignal(
    async () => {
      // First /readyz answers 503 while everything keeps being served, for DRAIN_DELAY_MS, so a load
      // balancer takes this gateway out of rotation before it refuses a connection. Then stop
      // accepting connections, let in-flight requests finish, close idle keep-alive sockets.
      gateway.startDraining();
      const drainDelay = drainDelayMs(config);
      if (drainDelay > 0) {
        logger.info({ drainDelayMs: drainDelay }, 'answering /readyz 503 before closing');
        await new Promise((resolve) => setTimeout(resolve, drainDelay));
      }
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Event streams never finish by themselves: ended now, their clients reconnect to another
      // gateway (each stream's connection closes with it).
      const streamsClosed = orderStreams.close();
      server.closeIdleConnections();
      const forced = setTimeout(() => server.closeAllConnections(), config.SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(forced);
      await streamsClosed;
      backends.close();
      await rateLimitStore?.close();
      await tracing.shutdown();
    },
    { logger, timeoutMs: drainDelayMs(config) + config.SHUTDOWN_GRACE_MS + 5_000 },
  );

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // With GATEWAY_REUSE_PORT, other gateway processes may listen on the same port (SO_REUSEPORT,
    // Node >= 22.12) and the kernel spreads new connections among them.
    server.listen(
      {
        port: config.GATEWAY_PORT,
        host: config.GATEWAY_HOST,
        reusePort: config.GATEWAY_REUSE_PORT,
      },
      () => resolve(),
    );
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.GATEWAY_PORT;
  logger.info(
    {
      port,
      reusePort: config.GATEWAY_REUSE_PORT,
      rateLimitStore: rateLimitStore ? 'redis' : 'process',
      userService: config.USER_SERVICE_ADDR,
      orderService: config.ORDER_SERVICE_ADDR,
    },
    `gateway listening on http://${config.GATEWAY_HOST}:${port}`,
  );
}

main().catch(exitOnStartupError(logger));
