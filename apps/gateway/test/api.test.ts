import request from 'supertest';
import {
  KEYBOARD,
  MOUSE,
  buildGateway,
  expectProblem,
  readinessChecks,
  signUp,
  type TestGateway,
} from './harness';
import { BACKEND_SERVICES } from '../src/backends';

describe('the public API against the real user and order services', () => {
  let gateway: TestGateway;
  beforeAll(() => {
    gateway = buildGateway();
  });
  afterAll(() => gateway.close());

  describe('users and tokens', () => {
    it('registers a user (201) without ever returning the password or its hash', async () => {
      const response = await request(gateway.app)
        .post('/v1/users')
        .send({
          email: 'Grace@Example.com',
          name: 'Grace Hopper',
          password: 'correct horse battery staple',
        })
        .expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        email: 'Grace@Example.com',
        name: 'Grace Hopper',
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      });
      expect(JSON.stringify(response.body)).not.toMatch(/horse|scrypt|password/i);
    });

    it('answers 409 for an email that is taken (in any case)', async () => {
      const { email } = await signUp(gateway.app);
      const response = await request(gateway.app).post('/v1/users').send({
        email: email.toUpperCase(),
        name: 'Again',
        password: 'correct horse battery staple',
      });
      expectProblem(response, 409);
    });

    it('names every bad field: the service’s rules come back as `errors`', async () => {
      const response = await request(gateway.app)
        .post('/v1/users')
        .send({ email: 'nope', name: '', password: 'short' });
      expectProblem(response, 400);
      expect(response.body.errors.map((e: { field: string }) => e.field)).toEqual([
        'email',
        'name',
        'password',
      ]);
    });

    it('names missing and mistyped fields, and unknown ones', async () => {
      const response = await request(gateway.app)
        .post('/v1/users')
        .send({ email: 42, extra: true });
      expectProblem(response, 400);
      const fields = response.body.errors.map((e: { field: string }) => e.field).sort();
      expect(fields).toEqual(expect.arrayContaining(['email', 'name', 'password']));
      expect(JSON.stringify(response.body.errors)).toContain('extra');
    });

    it('issues a bearer token for the right password and 401 otherwise, with one message for both failures', async () => {
      const { email } = await signUp(gateway.app);
      const ok = await request(gateway.app)
        .post('/v1/auth/token')
        .send({ email, password: 'correct horse battery staple' })
        .expect(200);
      expect(ok.body).toEqual({
        accessToken: expect.any(String),
        tokenType: 'Bearer',
        expiresIn: 900,
      });
      const wrong = await request(gateway.app)
        .post('/v1/auth/token')
        .send({ email, password: 'wrong password!!' });
      const unknown = await request(gateway.app)
        .post('/v1/auth/token')
        .send({ email: 'nobody-at-all@example.com', password: 'wrong password!!' });
      expectProblem(wrong, 401);
      expectProblem(unknown, 401);
      expect(wrong.body.detail).toBe(unknown.body.detail);
    });

    it('returns the caller for GET /v1/users/me', async () => {
      const user = await signUp(gateway.app);
      const response = await request(gateway.app).get('/v1/users/me').set(user.auth).expect(200);
      expect(response.body).toMatchObject({ id: user.id, email: user.email });
    });

    it('answers 401 with WWW-Authenticate without a token', async () => {
      const response = await request(gateway.app).get('/v1/users/me');
      expectProblem(response, 401);
      expect(response.headers['www-authenticate']).toBe('Bearer');
    });

    it('deletes the caller with DELETE /v1/users/me (204); the token then identifies nobody', async () => {
      const user = await signUp(gateway.app);
      const other = await signUp(gateway.app);
      const deleted = await request(gateway.app).delete('/v1/users/me').set(user.auth).expect(204);
      expect(deleted.text).toBe('');
      // A token outlives its user (no revocation), but is refused from then on: 401, as for any
      // token whose user no longer exists.
      const me = await request(gateway.app).get('/v1/users/me').set(user.auth);
      expectProblem(me, 401);
      expect(me.body.detail).toBe('the user this token was issued to no longer exists');
      expectProblem(await request(gateway.app).delete('/v1/users/me').set(user.auth), 401);
      // The account is gone: its email and password open nothing.
      expectProblem(
        await request(gateway.app)
          .post('/v1/auth/token')
          .send({ email: user.email, password: 'correct horse battery staple' }),
        401,
      );
      // Nobody else's.
      await request(gateway.app).get('/v1/users/me').set(other.auth).expect(200);
    });

    it('answers 401 to DELETE /v1/users/me without a token', async () => {
      const response = await request(gateway.app).delete('/v1/users/me');
      expectProblem(response, 401);
      expect(response.headers['www-authenticate']).toBe('Bearer');
    });
  });

  describe('catalog', () => {
    it('lists products with a cursor', async () => {
      const first = await request(gateway.app).get('/v1/products?pageSize=5').expect(200);
      expect(first.body.products).toHaveLength(5);
      expect(first.body.products[0]).toEqual({
        id: expect.any(String),
        sku: expect.any(String),
        name: expect.any(String),
        priceCents: expect.any(Number),
        currency: 'EUR',
        stock: expect.any(Number),
      });
      const second = await request(gateway.app)
        .get('/v1/products')
        .query({ pageSize: 5, pageToken: first.body.nextPageToken })
        .expect(200);
      expect(second.body.products[0].sku > first.body.products[4].sku).toBe(true);
    });

    it('gets one product, 404 for an unknown id and 400 naming the field for a malformed one', async () => {
      const response = await request(gateway.app).get(`/v1/products/${KEYBOARD}`).expect(200);
      expect(response.body).toMatchObject({ sku: 'KB-001', priceCents: 8900 });
      expectProblem(
        await request(gateway.app).get('/v1/products/00000000-0000-4000-8000-000000000000'),
        404,
      );
      const malformed = await request(gateway.app).get('/v1/products/not-a-uuid');
      expectProblem(malformed, 400);
      expect(malformed.body.errors).toEqual([{ field: 'id', message: 'must be a UUID' }]);
    });

    it('answers HEAD with the headers of the GET and no body', async () => {
      const get = await request(gateway.app).get(`/v1/products/${KEYBOARD}`).expect(200);
      const head = await request(gateway.app).head(`/v1/products/${KEYBOARD}`).expect(200);
      expect(head.headers['content-type']).toBe(get.headers['content-type']);
      expect(head.headers['content-length']).toBe(get.headers['content-length']);
      expect(Number(get.headers['content-length'])).toBe(Buffer.byteLength(get.text));
      expect(head.text ?? '').toBe('');
    });

    it.each([
      ['pageSize=0'],
      ['pageSize=101'],
      ['pageSize=abc'],
      ['pageSize=1&pageSize=2'],
      ['pageToken=forged!'],
    ])('answers 400 naming the parameter for %s', async (query) => {
      const response = await request(gateway.app).get(`/v1/products?${query}`);
      expectProblem(response, 400);
      expect(response.body.errors[0].field).toMatch(/^page(Size|Token)$/);
    });
  });

  describe('orders', () => {
    it('places an order (201), prices it on the server, and replays it for the same Idempotency-Key', async () => {
      const user = await signUp(gateway.app);
      const body = { items: [{ productId: MOUSE, quantity: 2 }] };
      const first = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .set('Idempotency-Key', 'checkout-42')
        .send(body)
        .expect(201);
      expect(first.body).toMatchObject({
        userId: user.id,
        status: 'CONFIRMED',
        items: [
          {
            productId: MOUSE,
            sku: 'MS-002',
            name: 'Wireless mouse',
            quantity: 2,
            unitPriceCents: 2900,
          },
        ],
        totalCents: 5800,
        currency: 'EUR',
      });
      const retry = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .set('Idempotency-Key', 'checkout-42')
        .send(body)
        .expect(201);
      expect(retry.body).toEqual(first.body);
    });

    it('refuses prices sent by the client (unknown fields are rejected)', async () => {
      const user = await signUp(gateway.app);
      const response = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .send({ items: [{ productId: MOUSE, quantity: 1, unitPriceCents: 1 }] });
      expectProblem(response, 400);
    });

    it('answers 409 naming the product when stock is short', async () => {
      const user = await signUp(gateway.app);
      const response = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .send({ items: [{ productId: KEYBOARD, quantity: 1000 }] });
      expectProblem(response, 409);
      expect(response.body.detail).toContain(KEYBOARD);
    });

    it('answers 400 naming each bad item field, and for an unknown product', async () => {
      const user = await signUp(gateway.app);
      const invalid = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .send({ items: [{ productId: 'x', quantity: 0 }] });
      expectProblem(invalid, 400);
      expect(invalid.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
        'items[0].productId',
        'items[0].quantity',
      ]);
      const unknown = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .send({ items: [{ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }] });
      expectProblem(unknown, 400);
      expect(unknown.body.errors).toEqual([
        {
          field: 'items[0].productId',
          message: 'product 00000000-0000-4000-8000-000000000000 does not exist',
        },
      ]);
    });

    it('rejects a malformed Idempotency-Key', async () => {
      const user = await signUp(gateway.app);
      const response = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .set('Idempotency-Key', 'k'.repeat(101))
        .send({ items: [{ productId: MOUSE, quantity: 1 }] });
      expectProblem(response, 400);
      expect(response.body.errors[0].field).toBe('idempotency-key');
    });

    it('lists, reads and cancels the caller’s orders; another user sees 404', async () => {
      const user = await signUp(gateway.app);
      const other = await signUp(gateway.app);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const placed = await request(gateway.app)
          .post('/v1/orders')
          .set(user.auth)
          .send({ items: [{ productId: MOUSE, quantity: 1 }] })
          .expect(201);
        ids.push(placed.body.id);
      }
      const page1 = await request(gateway.app)
        .get('/v1/orders?pageSize=2')
        .set(user.auth)
        .expect(200);
      expect(page1.body.orders.map((o: { id: string }) => o.id)).toEqual([ids[2], ids[1]]);
      const page2 = await request(gateway.app)
        .get('/v1/orders')
        .query({ pageSize: 2, pageToken: page1.body.nextPageToken })
        .set(user.auth)
        .expect(200);
      expect(page2.body.orders.map((o: { id: string }) => o.id)).toEqual([ids[0]]);
      expect(page2.body.nextPageToken).toBeNull();

      await request(gateway.app).get(`/v1/orders/${ids[0]}`).set(user.auth).expect(200);
      expectProblem(await request(gateway.app).get(`/v1/orders/${ids[0]}`).set(other.auth), 404);
      expectProblem(
        await request(gateway.app).post(`/v1/orders/${ids[0]}/cancel`).set(other.auth),
        404,
      );
      for (const malformed of [
        await request(gateway.app).get('/v1/orders/not-a-uuid').set(user.auth),
        await request(gateway.app).post('/v1/orders/not-a-uuid/cancel').set(user.auth),
      ]) {
        expectProblem(malformed, 400);
        expect(malformed.body.errors).toEqual([{ field: 'id', message: 'must be a UUID' }]);
      }

      const cancelled = await request(gateway.app)
        .post(`/v1/orders/${ids[0]}/cancel`)
        .set(user.auth)
        .expect(200);
      expect(cancelled.body.status).toBe('CANCELLED');
      expectProblem(
        await request(gateway.app).post(`/v1/orders/${ids[0]}/cancel`).set(user.auth),
        409,
      );
    });

    it('requires a token for every order route', async () => {
      expectProblem(await request(gateway.app).get('/v1/orders'), 401);
      expectProblem(await request(gateway.app).post('/v1/orders').send({ items: [] }), 401);
      expectProblem(await request(gateway.app).get(`/v1/orders/${MOUSE}`), 401);
      expectProblem(await request(gateway.app).post(`/v1/orders/${MOUSE}/cancel`), 401);
    });
  });

  describe('operations', () => {
    it('answers /healthz and /readyz (both services SERVING)', async () => {
      await request(gateway.app).get('/healthz').expect(200, { status: 'ok' });
      const ready = await request(gateway.app).get('/readyz').expect(200);
      expect(ready.body).toEqual({
        status: 'ready',
        checks: readinessChecks(),
      });
    });

    it('exposes Prometheus metrics by route pattern and status, and gRPC calls by method and code', async () => {
      await request(gateway.app).get(`/v1/products/${KEYBOARD}`).expect(200);
      await request(gateway.app)
        .get('/v1/products/00000000-0000-4000-8000-000000000000')
        .expect(404);
      const metrics = await request(gateway.app).get('/metrics').expect(200);
      expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
      expect(metrics.text).toMatch(
        /http_requests_total\{method="GET",route="\/v1\/products\/:id",status="200"\} \d+/,
      );
      expect(metrics.text).toMatch(
        /http_requests_total\{method="GET",route="\/v1\/products\/:id",status="404"\} \d+/,
      );
      expect(metrics.text).toMatch(
        /http_request_duration_seconds_bucket\{le="0.05",method="GET",route="\/v1\/products\/:id"/,
      );
      expect(metrics.text).toMatch(
        /grpc_client_calls_total\{service="order",method="getProduct",code="OK"\} \d+/,
      );
      expect(metrics.text).toMatch(
        /grpc_client_calls_total\{service="order",method="getProduct",code="NOT_FOUND"\} \d+/,
      );
      // Retries are counted too (none here: the backends answered).
      expect(metrics.text).toContain('# TYPE grpc_client_retries_total counter');
      expect(metrics.text).toContain('process_resident_memory_bytes');
    });

    it('serves an OpenAPI 3.1 document describing every route, and a docs page', async () => {
      const doc = await request(gateway.app).get('/openapi.json').expect(200);
      expect(doc.body.openapi).toBe('3.1.0');
      const operations = Object.entries(
        doc.body.paths as Record<string, Record<string, unknown>>,
      ).flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
      );
      expect(operations.sort()).toEqual(
        [
          'POST /v1/users',
          'POST /v1/auth/token',
          'GET /v1/users/me',
          'DELETE /v1/users/me',
          'GET /v1/users/{id}',
          'GET /v1/products',
          'GET /v1/products/{id}',
          'POST /v1/orders',
          'GET /v1/orders',
          'GET /v1/orders/{id}',
          'GET /v1/orders/events',
          'POST /v1/orders/{id}/cancel',
          'GET /healthz',
          'GET /readyz',
          'GET /metrics',
          'GET /openapi.json',
          // Those of the route groups `pnpm gen service` writes, one per service it added.
          ...Object.keys(BACKEND_SERVICES)
            .filter((name) => name !== 'user' && name !== 'order')
            .flatMap((name) => [`POST /v1/${name}/items`, `GET /v1/${name}/items/{id}`]),
        ].sort(),
      );
      // Generated from the validating schemas: the request body schema carries their constraints.
      const createOrder = doc.body.paths['/v1/orders'].post;
      const items = createOrder.requestBody.content['application/json'].schema.properties.items;
      expect(items).toMatchObject({ type: 'array', minItems: 1, maxItems: 50 });
      expect(items.items.properties.quantity).toMatchObject({ minimum: 1, maximum: 1000 });
      expect(createOrder.parameters).toEqual([
        expect.objectContaining({ name: 'Idempotency-Key', in: 'header' }),
      ]);
      expect(createOrder.security).toEqual([{ bearerAuth: [] }]);

      const page = await request(gateway.app).get('/docs').expect(200);
      expect(page.text).toContain('/docs/assets/swagger-ui-bundle.js');
      await request(gateway.app).get('/docs/assets/swagger-ui-bundle.js').expect(200);
      await request(gateway.app).get('/docs/init.js').expect(200);
    });

    it('sets the API security headers and returns X-Request-Id', async () => {
      for (const path of ['/healthz', `/v1/products/${MOUSE}`, '/v1/nowhere']) {
        const response = await request(gateway.app).get(path);
        expect(response.headers['x-content-type-options']).toBe('nosniff');
        expect(response.headers['content-security-policy']).toBe(
          "default-src 'none'; frame-ancestors 'none'",
        );
        expect(response.headers['cache-control']).toBe('no-store');
        expect(response.headers['x-frame-options']).toBe('DENY');
        expect(response.headers['strict-transport-security']).toContain('max-age=');
        expect(response.headers['x-powered-by']).toBeUndefined();
        expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      }
    });

    it('gives the docs page a CSP that lets its same-origin scripts run, and cacheable assets', async () => {
      const page = await request(gateway.app).get('/docs').expect(200);
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
      expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      const asset = await request(gateway.app).get('/docs/assets/swagger-ui.css').expect(200);
      expect(asset.headers['cache-control']).toBe('public, max-age=3600');
    });
  });
});
