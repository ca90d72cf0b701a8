import type { RunningSystem } from '@repo/system/system';
import { KEYBOARD, MOUSE, api, signUp, startTestSystem, type Api } from './system';

/** Idempotency keys are bound to the request they first came with (IETF Idempotency-Key draft). */
describe('Idempotency-Key', () => {
  let system: RunningSystem;
  let client: Api;

  beforeAll(async () => {
    system = await startTestSystem();
    client = api(system.gatewayUrl!);
  });

  afterAll(async () => {
    await system?.stop();
  });

  it('replays an order for the same request and refuses the same key with another body (422)', async () => {
    const buyer = await signUp(client, 'idem-order');
    const key = { 'Idempotency-Key': `order-${Date.now()}` };
    const body = { items: [{ productId: KEYBOARD, quantity: 1 }] };
    const first = await client.post('/v1/orders', body, buyer.token, key);
    expect(first.status).toBe(201);
    const again = await client.post('/v1/orders', body, buyer.token, key);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);

    const other = await client.post(
      '/v1/orders',
      { items: [{ productId: MOUSE, quantity: 3 }] },
      buyer.token,
      key,
    );
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({
      type: '/problems/idempotency-key-reused',
      status: 422,
      errors: [{ field: 'idempotencyKey' }],
    });
    const orders = await client.get('/v1/orders', buyer.token);
    expect(orders.body.orders).toHaveLength(1);
  });

  it('makes registration safe to retry: the same key and body return the same user', async () => {
    const email = `idem-${Date.now()}@example.com`;
    const body = { email, name: 'Idem', password: 'correct horse battery staple' };
    const key = { 'Idempotency-Key': `register-${Date.now()}` };
    const first = await client.post('/v1/users', body, undefined, key);
    expect(first.status).toBe(201);
    const again = await client.post('/v1/users', body, undefined, key);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    // Without the key, the same email is taken.
    expect((await client.post('/v1/users', body)).status).toBe(409);
    // The same key with another body is refused.
    const other = await client.post('/v1/users', { ...body, name: 'Someone else' }, undefined, key);
    expect(other.status).toBe(422);
    expect(other.body.type).toBe('/problems/idempotency-key-reused');
  });
});
