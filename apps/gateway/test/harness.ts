import type { Express } from 'express';
import { SignJWT } from 'jose';
import request from 'supertest';
import { createLogger, type Logger } from '@repo/service-kit/logger';
import { createApp, type AppOptions, type GatewayApp } from '../src/app';
import { TokenService } from '../src/auth/tokens';
import { BACKEND_SERVICES, createBackends, type Backends } from '../src/backends';
import { createMetrics } from '../src/metrics';

export const SECRET = 'test-secret-that-is-long-enough-for-hs256!';
export const ISSUER = 'test-issuer';
export const AUDIENCE = 'test-audience';
export const KEYBOARD = '0b7d3e4a-1c2f-4a5b-8c6d-000000000001';
export const MOUSE = '0b7d3e4a-1c2f-4a5b-8c6d-000000000002';

export const logger: Logger = createLogger({
  name: 'gateway-test',
  level: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent',
  pretty: false,
});

export interface TestGateway extends GatewayApp {
  app: Express;
  backends: Backends;
  tokens: TokenService;
  close(): void;
}

/** The real gateway app (in-process, for supertest) in front of the given gRPC addresses. */
export function buildGateway(
  overrides: Partial<
    Pick<AppOptions, 'bodyLimitBytes' | 'routeDeadlineMs' | 'rateLimit' | 'corsOrigins'>
  > & {
    userAddress?: string;
    orderAddress?: string;
    backendDeadlineMs?: number;
  } = {},
): TestGateway {
  const metrics = createMetrics();
  const backends = createBackends({
    userAddress: overrides.userAddress ?? process.env.TEST_USER_ADDR!,
    orderAddress: overrides.orderAddress ?? process.env.TEST_ORDER_ADDR!,
    // pnpm gen service: service addresses above this line
    // Generous defaults (production: 2 s and 3 s): the tests about deadlines set their own, and
    // the others must not fail because a busy machine hashed a password slowly.
    deadlineMs: overrides.backendDeadlineMs ?? 20_000,
    metrics,
  });
  const tokens = new TokenService({
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    ttlSeconds: 900,
  });
  const gateway = createApp({
    backends,
    tokens,
    metrics,
    logger,
    bodyLimitBytes: overrides.bodyLimitBytes ?? 16_384,
    routeDeadlineMs: overrides.routeDeadlineMs ?? 30_000,
    rateLimit: overrides.rateLimit ?? { max: 0, windowMs: 60_000 },
    corsOrigins: overrides.corsOrigins ?? '',
    trustProxyHops: 0,
  });
  return { ...gateway, backends, tokens, close: () => backends.close() };
}

let counter = 0;
/** Registers a fresh user through the API and logs in; returns the user and a bearer header. */
export async function signUp(
  app: Express,
): Promise<{ id: string; email: string; auth: { Authorization: string } }> {
  const email = `person-${process.pid}-${Date.now()}-${++counter}@example.com`;
  const password = 'correct horse battery staple';
  const created = await request(app)
    .post('/v1/users')
    .send({ email, name: 'Test Person', password })
    .expect(201);
  const token = await request(app).post('/v1/auth/token').send({ email, password }).expect(200);
  return {
    id: created.body.id as string,
    email,
    auth: { Authorization: `Bearer ${token.body.accessToken as string}` },
  };
}

/** A token signed with our secret but arbitrary claims/headers, for the rejection tests. */
export async function forgeToken(
  claims: { sub?: string; exp?: number; iss?: string; aud?: string },
  secret = SECRET,
): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (claims.sub) jwt.setSubject(claims.sub);
  jwt.setIssuer(claims.iss ?? ISSUER).setAudience(claims.aud ?? AUDIENCE);
  jwt.setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600);
  return jwt.sign(new TextEncoder().encode(secret));
}

/**
 * /readyz's `checks` with every backend SERVING (user, order, and any service `pnpm gen service`
 * added), then `changes`.
 */
export function readinessChecks(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...Object.fromEntries(Object.keys(BACKEND_SERVICES).map((name) => [name, 'SERVING'])),
    ...changes,
  };
}

/** Every error answer must be an RFC 9457 problem document. */
export function expectProblem(response: request.Response, status: number): void {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.body).toMatchObject({
    type: expect.any(String),
    title: expect.any(String),
    status,
    detail: expect.any(String),
  });
}
