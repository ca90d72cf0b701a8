import request from 'supertest';
import { createApp } from '../src/app';
import { TokenService } from '../src/auth/tokens';
import type { Backends } from '../src/backends';
import { createMetrics } from '../src/metrics';
import { Conformance, conformanceOptions, type Answer } from './conformance';
import { logger } from './harness';

/**
 * Jest setup (setupFilesAfterEnv): every answer a test receives through supertest is checked against
 * the document the gateway serves at /openapi.json (see test/conformance.ts); a mismatch fails the
 * request's promise, so the test fails naming the operation, the status and what disagrees.
 */

const LOADING = Symbol('loading the document');
let conformance: Conformance | undefined;

type TestInstance = {
  method: string;
  [LOADING]?: boolean;
};
type Res = {
  status: number;
  headers: Answer['headers'];
  body: unknown;
  text?: string;
  req: { path: string };
};
type AssertFn = (this: TestInstance, error: unknown, res: Res | undefined, fn?: Callback) => void;
type Callback = (error: unknown, res: Res | undefined) => void;

const prototype = (request as unknown as { Test: { prototype: { assert: AssertFn } } }).Test
  .prototype;
const assert = prototype.assert;
prototype.assert = function (this: TestInstance, error, res, fn) {
  if (!res || !fn || this[LOADING]) {
    assert.call(this, error, res, fn);
    return;
  }
  if (!conformance) throw new Error('the OpenAPI document is not loaded');
  let problems: string[];
  try {
    problems = conformance.check(
      {
        method: this.method,
        path: res.req.path.split('?')[0]!,
        status: res.status,
        headers: res.headers,
        body: res.body,
        text: res.text,
      },
      conformanceOptions,
    );
  } catch (checkError) {
    problems = [`the check failed: ${String(checkError)}`];
  }
  const mismatch =
    problems.length > 0
      ? new Error(`the answer does not match /openapi.json:\n  ${problems.join('\n  ')}`)
      : undefined;
  assert.call(this, error, res, function (this: TestInstance, assertError, assertRes) {
    fn.call(this, assertError ?? mismatch ?? null, assertRes);
  });
};

beforeAll(async () => {
  if (conformance) return;
  // The document as served: an app whose backends are never called.
  const { app } = createApp({
    backends: {} as Backends,
    tokens: new TokenService({
      secret: 'x'.repeat(32),
      issuer: 'conformance',
      audience: 'conformance',
      ttlSeconds: 60,
    }),
    metrics: createMetrics(),
    logger,
    bodyLimitBytes: 1_024,
    routeDeadlineMs: 1_000,
    rateLimit: { max: 0, windowMs: 1_000 },
    corsOrigins: '',
    trustProxyHops: 0,
  });
  const loading = request(app).get('/openapi.json');
  (loading as unknown as TestInstance)[LOADING] = true;
  const document = (await loading.expect(200)).body as Record<string, unknown>;
  conformance = new Conformance(document);
});
