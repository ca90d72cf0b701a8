import type { RunningSystem } from '@repo/system/system';
import { KEYBOARD, api, signUp, startTestSystem, type Api } from './system';

/**
 * A 504 means "not done". A service that was paused (SIGSTOP: a long GC pause, a stalled VM, a
 * debugger) receives, when it resumes, calls whose callers gave up long ago. gRPC's relative
 * timeout would restart on arrival; the absolute deadline every call carries does not, so none of
 * that work may happen.
 */
describe('work stops when its deadline passes', () => {
  let system: RunningSystem;
  let client: Api;

  beforeAll(async () => {
    system = await startTestSystem();
    client = api(system.gatewayUrl!);
  });

  afterAll(async () => {
    await system?.stop();
  });

  /** Runs `during` while `app` is paused, then resumes it (also when `during` fails). */
  async function whilePaused<T>(app: 'user' | 'order', during: () => Promise<T>): Promise<T> {
    const pid = system.apps[app]!.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      return await during();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }

  const stockOf = async (id: string) =>
    (await client.get(`/v1/products/${id}`)).body.stock as number;

  it('places none of the orders that answered 504 while the order service was paused', async () => {
    const buyer = await signUp(client, 'paused-order');
    const before = await stockOf(KEYBOARD);
    const keys = Array.from({ length: 5 }, (_, i) => `paused-${Date.now()}-${i}`);
    const answers = await whilePaused('order', () =>
      Promise.all(
        keys.map((key) =>
          client.post(
            '/v1/orders',
            { items: [{ productId: KEYBOARD, quantity: 1 }] },
            buyer.token,
            { 'Idempotency-Key': key },
          ),
        ),
      ),
    );
    expect(answers.map((answer) => answer.status)).toEqual([504, 504, 504, 504, 504]);
    expect(answers[0]!.body.detail).toMatch(/did not carry out the request/);

    // After resuming, the service gets those calls first (one connection, in order); one more order
    // afterwards is answered only once they have been dealt with.
    const later = await client.post(
      '/v1/orders',
      { items: [{ productId: KEYBOARD, quantity: 1 }] },
      buyer.token,
      { 'Idempotency-Key': `after-${Date.now()}` },
    );
    expect(later.status).toBe(201);
    const orders = await client.get('/v1/orders?pageSize=100', buyer.token);
    expect(orders.body.orders.map((order: { id: string }) => order.id)).toEqual([later.body.id]);
    expect(await stockOf(KEYBOARD)).toBe(before - 1);

    // A retry with the same key places the order now (nothing to replay: it never happened).
    const retry = await client.post(
      '/v1/orders',
      { items: [{ productId: KEYBOARD, quantity: 1 }] },
      buyer.token,
      { 'Idempotency-Key': keys[0]! },
    );
    expect(retry.status).toBe(201);
    expect(await stockOf(KEYBOARD)).toBe(before - 2);
  });

  it('creates no account for a registration that answered 504 while the user service was paused', async () => {
    const email = `paused-user-${Date.now()}@example.com`;
    const password = 'correct horse battery staple';
    const answer = await whilePaused('user', () =>
      client.post('/v1/users', { email, name: 'Paused', password }),
    );
    expect(answer.status).toBe(504);

    // Once resumed: the account does not exist, and registering again works.
    const registered = await client.post('/v1/users', { email, name: 'Paused', password });
    expect(registered.status).toBe(201);
    const login = await client.post('/v1/auth/token', { email, password });
    expect(login.status).toBe(200);
  });

  it('cancels the backend call when the HTTP client goes away before its answer', async () => {
    /** getProduct calls the gateway made, ended with `code`, from its metrics. */
    const calls = async (code: string) => {
      const text = (await client.get('/metrics')).body as string;
      return text
        .split('\n')
        .filter(
          (line) =>
            line.startsWith('grpc_client_calls_total') &&
            line.includes(`code="${code}"`) &&
            line.includes('method="getProduct"'),
        )
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    };
    const before = { cancelled: await calls('CANCELLED'), late: await calls('DEADLINE_EXCEEDED') };
    await whilePaused('order', async () => {
      const abandoned = fetch(`${system.gatewayUrl}/v1/products/${KEYBOARD}`, {
        signal: AbortSignal.timeout(300),
      });
      await expect(abandoned).rejects.toThrow();
      // The call ends one way or the other: cancelled when the client left (what we want), or
      // by its own deadline (2 s) had nobody cancelled it.
      while (
        (await calls('CANCELLED')) === before.cancelled &&
        (await calls('DEADLINE_EXCEEDED')) === before.late
      ) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    });
    expect(await calls('CANCELLED')).toBe(before.cancelled + 1);
    expect(await calls('DEADLINE_EXCEEDED')).toBe(before.late);
  });
});
