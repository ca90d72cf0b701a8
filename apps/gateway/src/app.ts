import compression from 'compression';
import cors from 'cors';
import express, { type Express } from 'express';
import type { Logger } from '@repo/service-kit/logger';
import type { TokenService } from './auth/tokens';
import { BACKEND_SERVICES, type BackendName, type Backends } from './backends';
import { OrderStreams } from './events/order-streams';
import {
  closeWhenDraining,
  errorHandler,
  inOrder,
  notFound,
  observe,
  requestContext,
  RETRY_AFTER_SECONDS,
  verifyUtf8,
} from './http/middleware';
import { PROBLEM_TYPES, problem, sendProblem } from './http/problem';
import {
  FixedWindowLimiter,
  rateLimiter,
  SharedWindowLimiter,
  type RateLimitStore,
} from './http/rate-limit';
import { mountRoutes, type AnyRoute } from './http/route';
import { securityHeaders } from './http/security-headers';
import type { Metrics } from './metrics';
import { buildOpenApiDocument } from './openapi/document';
import { docsRouter } from './openapi/docs-page';
import { catalogRoutes } from './routes/catalog';
import { orderRoutes } from './routes/orders';
import { userRoutes } from './routes/users';
// pnpm gen service: route groups' imports above this line

/** Every API route's path starts with this; the rate limit applies below it. */
const API_BASE_PATH = '/v1';

export interface AppOptions {
  backends: Backends;
  tokens: TokenService;
  metrics: Metrics;
  logger: Logger;
  bodyLimitBytes: number;
  routeDeadlineMs: number;
  /**
   * `max` requests per client per `windowMs` (0: no limit), counted in `store` when several
   * gateways share one (Redis), else in this process.
   */
  rateLimit: { max: number; windowMs: number; store?: RateLimitStore | undefined };
  /** '' disables CORS, '*' allows any origin, otherwise a comma-separated list. */
  corsOrigins: string;
  trustProxyHops: number;
  /**
   * The live order events of `GET /v1/orders/events` (main.ts connects them to the broker).
   * Absent: that route answers 503.
   */
  orderStreams?: OrderStreams | undefined;
}

export interface GatewayApp {
  app: Express;
  /** Every API route, as specified (for the OpenAPI document and tests). */
  routes: readonly AnyRoute[];
  /** From now on /readyz answers 503 and responses ask clients to close their connections. */
  startDraining(): void;
}

/** Builds the Express app; never listens (main.ts does), so tests drive it with supertest. */
export function createApp(options: AppOptions): GatewayApp {
  const { backends, logger, metrics } = options;
  const orderStreams =
    options.orderStreams ?? new OrderStreams({ logger, heartbeatMs: 15_000, maxStreams: 0 });
  metrics.observeOrderStreams(() => orderStreams.size);
  const routes = [
    ...userRoutes(backends, options.tokens),
    ...catalogRoutes(backends),
    ...orderRoutes(backends, orderStreams),
    // pnpm gen service: route groups above this line
  ];
  const openApi = JSON.stringify(buildOpenApiDocument(routes));
  let draining = false;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', options.trustProxyHops);

  // What every request goes through, in one layer: the request id and its async context (first, so
  // everything after runs inside it), metrics and the access log, headers.
  app.use(
    inOrder(
      requestContext,
      observe(metrics, logger),
      closeWhenDraining(() => draining),
      securityHeaders,
    ),
  );
  if (options.corsOrigins) {
    const origins =
      options.corsOrigins === '*'
        ? '*'
        : options.corsOrigins.split(',').map((origin) => origin.trim());
    app.use(
      cors({
        origin: origins,
        exposedHeaders: [
          'X-Request-Id',
          'X-Trace-Id',
          'Retry-After',
          'RateLimit',
          'RateLimit-Policy',
        ],
      }),
    );
  }

  // The API first: it is where the traffic is, and Express tries layers in order.
  const api = express.Router();
  const { max, windowMs, store } = options.rateLimit;
  if (max > 0) {
    api.use(
      rateLimiter(
        store
          ? new SharedWindowLimiter(max, windowMs, store)
          : new FixedWindowLimiter(max, windowMs),
      ),
    );
  }
  mountRoutes(api, API_BASE_PATH, routes, {
    tokens: options.tokens,
    routeDeadlineMs: options.routeDeadlineMs,
    jsonParser: express.json({
      limit: options.bodyLimitBytes,
      strict: true,
      type: ['application/json', 'application/*+json'],
      verify: verifyUtf8,
    }),
  });
  app.use(API_BASE_PATH, api);

  // Operations endpoints: not rate limited, no body.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const entries = await Promise.all(
      (Object.keys(BACKEND_SERVICES) as BackendName[]).map(async (name) => {
        try {
          return [name, await backends.health[name].check(BACKEND_SERVICES[name], 500)] as const;
        } catch {
          return [name, 'UNREACHABLE'] as const;
        }
      }),
    );
    const checks = Object.fromEntries(entries);
    const failing = entries.filter(([, state]) => state !== 'SERVING');
    if (draining || failing.length > 0) {
      const detail = draining
        ? 'the gateway is shutting down'
        : `not ready: ${failing.map(([name, state]) => `the ${name} service is ${state}`).join('; ')}`;
      sendProblem(
        res,
        { ...problem(503, PROBLEM_TYPES.unavailable, detail), checks },
        {
          'Retry-After': String(RETRY_AFTER_SECONDS),
        },
      );
      return;
    }
    res.json({ status: 'ready', checks });
  });
  // Large answers that are not the API's own (the API's JSON answers are small and hot: they are
  // never compressed) go compressed when the client accepts it; below 1 KB, never.
  const compress = compression({ threshold: 1024 });
  app.get('/metrics', compress, async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/openapi.json', compress, (_req, res) => {
    res.type('application/json').send(openApi);
  });
  app.use('/docs', compress, docsRouter());

  app.use(
    notFound(routes, {
      '/healthz': ['GET'],
      '/readyz': ['GET'],
      '/metrics': ['GET'],
      '/openapi.json': ['GET'],
      '/docs': ['GET'],
    }),
  );
  app.use(errorHandler(logger));

  return {
    app,
    routes,
    startDraining: () => {
      draining = true;
    },
  };
}
