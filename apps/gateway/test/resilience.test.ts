import request from 'supertest';
import { freePort } from '@repo/service-kit/ports';
import { AppProcess } from '@repo/system/system';
import {
  MOUSE,
  buildGateway,
  expectProblem,
  readinessChecks,
  signUp,
  type TestGateway,
} from './harness';

describe('when the order service stops', () => {
  let order: AppProcess;
  let gateway: TestGateway;

  beforeAll(async () => {
    // Our own order service process, on the already-migrated order database, so we can stop it.
    const port = await freePort();
    const env = {
      ...(JSON.parse(process.env.TEST_ORDER_ENV!) as Record<string, string>),
      ORDER_GRPC_PORT: String(port),
      METRICS_PORT: '0',
    };
    order = new AppProcess('order', port, env, () => undefined, 30_000);
    await order.start();
    gateway = buildGateway({
      orderAddress: order.address,
      routeDeadlineMs: 2_000,
      backendDeadlineMs: 1_500,
    });
  });

  afterAll(async () => {
    gateway.close();
    await order.stop();
  });

  it('answers 503 on order routes within the deadline, keeps serving the rest, and recovers', async () => {
    const user = await signUp(gateway.app);
    await request(gateway.app).get(`/v1/products/${MOUSE}`).expect(200);

    expect(await order.stop()).toBe(0); // graceful: SIGTERM, drained, exit 0

    for (const call of [
      () => request(gateway.app).get(`/v1/products/${MOUSE}`),
      () => request(gateway.app).get('/v1/orders').set(user.auth),
      () =>
        request(gateway.app)
          .post('/v1/orders')
          .set(user.auth)
          .send({ items: [{ productId: MOUSE, quantity: 1 }] }),
    ]) {
      const started = Date.now();
      const response = await call();
      expect(Date.now() - started).toBeLessThan(2_500); // the 2 s route deadline, plus slack
      expectProblem(response, 503);
      expect(response.headers['retry-after']).toBe('5');
      expect(response.body.detail).toBe('the order service is unavailable; retry later');
    }

    // Routes that do not need the order service are unaffected.
    await request(gateway.app).get('/v1/users/me').set(user.auth).expect(200);
    await request(gateway.app).get('/healthz').expect(200);
    const ready = await request(gateway.app).get('/readyz');
    expectProblem(ready, 503);
    expect(ready.body.detail).toContain('the order service is');
    expect(ready.body.checks).toEqual(
      readinessChecks({ order: expect.not.stringMatching(/^SERVING$/) }),
    );

    // Back on the same port: the gateway's channel reconnects by itself.
    await order.start();
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 201; attempt++) {
      status = (
        await request(gateway.app)
          .post('/v1/orders')
          .set(user.auth)
          .send({ items: [{ productId: MOUSE, quantity: 1 }] })
      ).status;
      if (status !== 201) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status).toBe(201);
    // Ready again too, once its health check's own channel has reconnected (on a busy machine a
    // check or two after the first order).
    let readiness = 0;
    for (let attempt = 0; attempt < 50 && readiness !== 200; attempt++) {
      readiness = (await request(gateway.app).get('/readyz')).status;
      if (readiness !== 200) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(readiness).toBe(200);
  });
});
