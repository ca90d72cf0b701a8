import fc from 'fast-check';
import request from 'supertest';
import { MOUSE, buildGateway, expectProblem, signUp, type TestGateway } from './harness';

describe('malformed and hostile requests', () => {
  let gateway: TestGateway;
  let auth: { Authorization: string };

  beforeAll(async () => {
    gateway = buildGateway({ bodyLimitBytes: 1_024 });
    auth = (await signUp(gateway.app)).auth;
  });
  afterAll(() => gateway.close());

  it('answers malformed JSON with 400', async () => {
    const response = await request(gateway.app)
      .post('/v1/users')
      .set('Content-Type', 'application/json')
      .send('{"email":');
    expectProblem(response, 400);
    expect(response.body.detail).toBe('the body is not valid JSON');
  });

  it('answers a non-JSON body with 415', async () => {
    const response = await request(gateway.app)
      .post('/v1/users')
      .set('Content-Type', 'text/plain')
      .send('hello');
    expectProblem(response, 415);
    expectProblem(
      await request(gateway.app).post('/v1/users').type('form').send({ email: 'a' }),
      415,
    );
  });

  it('answers an oversized body with 413', async () => {
    const response = await request(gateway.app)
      .post('/v1/orders')
      .set(auth)
      .send({ items: Array.from({ length: 40 }, () => ({ productId: MOUSE, quantity: 1 })) });
    expectProblem(response, 413);
  });

  it.each(['null', '[]', '"text"', '42', 'true'])(
    'answers the JSON body %s with 400',
    async (body) => {
      const response = await request(gateway.app)
        .post('/v1/users')
        .set('Content-Type', 'application/json')
        .send(body);
      expectProblem(response, 400);
    },
  );

  it('answers unknown routes with 404 and unknown methods with 405 and Allow', async () => {
    expectProblem(await request(gateway.app).get('/v2/anything'), 404);
    expectProblem(await request(gateway.app).get('/'), 404);
    const put = await request(gateway.app).put(`/v1/products/${MOUSE}`);
    expectProblem(put, 405);
    expect(put.headers.allow).toBe('GET, HEAD');
    const del = await request(gateway.app).delete('/v1/orders');
    expectProblem(del, 405);
    expect(del.headers.allow).toBe('POST, GET, HEAD');
  });

  it('keeps a well-formed X-Request-Id and replaces a malformed one', async () => {
    const kept = await request(gateway.app)
      .get('/healthz')
      .set('X-Request-Id', 'client-id_123:abc.def');
    expect(kept.headers['x-request-id']).toBe('client-id_123:abc.def');
    const replaced = await request(gateway.app)
      .get('/healthz')
      .set('X-Request-Id', 'x'.repeat(200));
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const injected = await request(gateway.app).get('/healthz').set('X-Request-Id', 'a b<script>');
    expect(injected.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('rate-limits per client with 429, Retry-After and a problem body', async () => {
    const limited = buildGateway({ rateLimit: { max: 3, windowMs: 60_000 } });
    try {
      for (let i = 0; i < 3; i++) {
        const allowed = await request(limited.app).get(`/v1/products/${MOUSE}`).expect(200);
        expect(allowed.headers['ratelimit-policy']).toBe('3;w=60');
        expect(allowed.headers.ratelimit).toMatch(
          new RegExp(`^limit=3, remaining=${2 - i}, reset=\\d+$`),
        );
      }
      const response = await request(limited.app).get(`/v1/products/${MOUSE}`);
      expectProblem(response, 429);
      expect(response.body.detail).toMatch(/^too many requests from this client; retry in \d+ s$/);
      expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
      expect(response.headers.ratelimit).toMatch(/^limit=3, remaining=0, reset=\d+$/);
      await request(limited.app).get('/healthz').expect(200); // operations endpoints are not limited
    } finally {
      limited.close();
    }
  });

  it('answers CORS preflights for configured origins only', async () => {
    const withCors = buildGateway({ corsOrigins: 'https://shop.example' });
    try {
      const allowed = await request(withCors.app)
        .options('/v1/products')
        .set('Origin', 'https://shop.example')
        .set('Access-Control-Request-Method', 'GET');
      expect(allowed.status).toBe(204);
      expect(allowed.headers['access-control-allow-origin']).toBe('https://shop.example');
      const other = await request(withCors.app)
        .get('/v1/products')
        .set('Origin', 'https://evil.example');
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      withCors.close();
    }
  });

  it('never answers generated hostile requests with a 5xx (other than 503/504), and every error is a problem document', async () => {
    const paths = fc.oneof(
      fc.constantFrom(
        '/v1/users',
        '/v1/auth/token',
        '/v1/users/me',
        '/v1/products',
        `/v1/products/${MOUSE}`,
        '/v1/orders',
        `/v1/orders/${MOUSE}`,
        `/v1/orders/${MOUSE}/cancel`,
        '/healthz',
        '/readyz',
      ),
      fc.string({ maxLength: 40 }).map((s) => `/v1/${encodeURIComponent(s)}`),
      // Malformed percent-encoding (the router cannot decode the parameter).
      fc
        .tuple(
          fc.constantFrom('/v1/products/', '/v1/orders/'),
          fc.constantFrom('%', '%ZZ', '%E0%A4%A', '%ED%A0%80', '%FF', 'a%2'),
          fc.constantFrom('', '/cancel'),
        )
        .map((parts) => parts.join('')),
      fc.string({ maxLength: 30 }).map((s) => `/v1/products/${encodeURIComponent(s)}`),
      fc
        .string({ maxLength: 30 })
        .map(
          (s) =>
            `/v1/products?pageSize=${encodeURIComponent(s)}&pageToken=${encodeURIComponent(s)}`,
        ),
    );
    const bodies = fc.oneof(
      fc.json({ maxDepth: 3 }),
      fc.string({ maxLength: 200 }),
      fc
        .record({
          // 'binary' strings hold any code unit: NUL and unpaired surrogates included.
          email: fc.oneof(
            fc.string(),
            fc.string({ unit: 'binary' }),
            fc.integer(),
            fc.constant(null),
          ),
          name: fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.array(fc.string())),
          password: fc.oneof(fc.string(), fc.boolean()),
          items: fc.oneof(
            fc.array(
              fc.record({
                productId: fc.oneof(fc.uuid(), fc.string()),
                quantity: fc.oneof(fc.integer(), fc.double(), fc.string()),
              }),
              { maxLength: 60 },
            ),
            fc.string(),
          ),
        })
        .map((value) => JSON.stringify(value)),
    );
    const headers = fc.record({
      contentType: fc.constantFrom(
        'application/json',
        'application/merge-patch+json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/json; charset=latin1',
        '',
      ),
      authorization: fc.oneof(
        fc.constant(auth.Authorization),
        fc.string({ maxLength: 60 }).map((s) => `Bearer ${s.replace(/[\r\n]/g, '')}`),
        fc.constant(''),
      ),
      idempotencyKey: fc.option(
        fc.string({ maxLength: 120 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
        { nil: undefined },
      ),
      requestId: fc.option(
        fc.string({ maxLength: 200 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
        { nil: undefined },
      ),
    });
    const methods = fc.constantFrom('get', 'post', 'put', 'delete', 'patch');

    await fc.assert(
      fc.asyncProperty(methods, paths, bodies, headers, async (method, path, body, h) => {
        let call = request(gateway.app)[method as 'get'](path);
        if (h.contentType) call = call.set('Content-Type', h.contentType);
        if (h.authorization) call = call.set('Authorization', h.authorization);
        if (h.idempotencyKey !== undefined) call = call.set('Idempotency-Key', h.idempotencyKey);
        if (h.requestId !== undefined) call = call.set('X-Request-Id', h.requestId);
        const response = method === 'get' ? await call : await call.send(body);
        const ok = response.status < 500 || response.status === 503 || response.status === 504;
        if (!ok)
          throw new Error(
            `${method.toUpperCase()} ${path} -> ${response.status}: ${response.text}`,
          );
        if (response.status >= 400) {
          expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
          expect(response.body).toMatchObject({
            type: expect.any(String),
            title: expect.any(String),
            status: response.status,
            detail: expect.any(String),
          });
          expect(response.text).not.toMatch(/\bat .*\.(js|ts):\d+/); // never a stack trace
        }
      }),
      { numRuns: 300 },
    );
  });
});
