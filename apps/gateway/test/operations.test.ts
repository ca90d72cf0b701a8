import request from 'supertest';
import { checkMetricsWithPromtool } from '@repo/service-kit/testing';
import { MOUSE, buildGateway, expectProblem, type TestGateway } from './harness';

describe('metrics and the operations endpoints', () => {
  let gateway: TestGateway;
  beforeAll(() => {
    gateway = buildGateway({ bodyLimitBytes: 1_024 });
  });
  afterAll(() => gateway.close());

  it('counts a request refused while its body is read under its route (/v1/users, not /users)', async () => {
    expectProblem(
      await request(gateway.app)
        .post('/v1/users')
        .set('Content-Type', 'application/json')
        .send('{"email":'),
      400,
    );
    expectProblem(
      await request(gateway.app)
        .post('/v1/orders')
        .send({ items: Array.from({ length: 40 }, () => ({ productId: MOUSE, quantity: 1 })) }),
      413,
    );
    const metrics = (await request(gateway.app).get('/metrics').expect(200)).text;
    expect(metrics).toMatch(
      /http_requests_total\{method="POST",route="\/v1\/users",status="400"\} 1/,
    );
    expect(metrics).toMatch(
      /http_requests_total\{method="POST",route="\/v1\/orders",status="413"\} 1/,
    );
    expect(metrics).not.toMatch(/route="\/(users|orders)"/);
  });

  // promtool is Debian's `prometheus` package (.ci/run installs it): without it this fails, saying so.
  it('serves metrics that `promtool check metrics` accepts', async () => {
    // Some traffic first, so every family has samples (counters, histograms, labels).
    await request(gateway.app).get(`/v1/products/${MOUSE}`).expect(200);
    await request(gateway.app).get('/v1/products/00000000-0000-4000-8000-000000000000');
    await request(gateway.app).get('/v1/nowhere');
    const metrics = (await request(gateway.app).get('/metrics').expect(200)).text;
    expect(await checkMetricsWithPromtool(metrics)).toBe('');
  });

  describe('compression', () => {
    it.each([
      '/openapi.json',
      '/metrics',
      '/docs/assets/swagger-ui-bundle.js',
      '/docs/assets/swagger-ui.css',
    ])('compresses %s for a client that accepts gzip', async (path) => {
      const response = await request(gateway.app)
        .get(path)
        .set('Accept-Encoding', 'gzip')
        .expect(200);
      expect(response.headers['content-encoding']).toBe('gzip');
      expect(response.headers.vary).toMatch(/Accept-Encoding/i);
    });

    it('sends /openapi.json as it is to a client that does not accept compression', async () => {
      const response = await request(gateway.app)
        .get('/openapi.json')
        .set('Accept-Encoding', 'identity')
        .expect(200);
      expect(response.headers['content-encoding']).toBeUndefined();
      expect(response.body.openapi).toBe('3.1.0');
    });

    it('never compresses the API answers, however large', async () => {
      const response = await request(gateway.app)
        .get('/v1/products?pageSize=100')
        .set('Accept-Encoding', 'gzip, br')
        .expect(200);
      expect(Number(response.headers['content-length'])).toBeGreaterThan(1024);
      expect(response.headers['content-encoding']).toBeUndefined();
    });
  });
});
