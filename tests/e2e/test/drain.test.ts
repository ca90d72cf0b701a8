import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { createServiceClient } from '@repo/service-kit/grpc-client';
import { watchHealth, type ServingStatus } from '@repo/service-kit/health-client';
import type { RunningSystem } from '@repo/system/system';
import { sleep, startTestSystem } from './system';

const DRAIN_DELAY_MS = '1500';

/**
 * On SIGTERM an app says it is going away (health NOT_SERVING, /readyz 503) and keeps serving for
 * DRAIN_DELAY_MS before it refuses anything, so whatever routes traffic to it moves away first.
 * These watch from the outside, as a load balancer would.
 */
describe('drain that load balancers can see', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startTestSystem(
      { DRAIN_DELAY_MS },
      { env: { user: { DRAIN_DELAY_MS }, order: { DRAIN_DELAY_MS } } },
    );
  });

  afterAll(async () => {
    await system?.stop();
  });

  // The gateway first: once the user service is gone, /readyz is 503 anyway.
  it('the gateway answers /readyz 503 before it refuses the first connection, and serves meanwhile', async () => {
    const gateway = system.apps.gateway!;
    const url = gateway.url;
    const probes: { ready: number; at: number }[] = [];
    const requests: { ok: boolean; at: number }[] = [];
    let running = true;
    const probe = (async () => {
      while (running) {
        try {
          probes.push({ ready: (await fetch(`${url}/readyz`)).status, at: Date.now() });
        } catch {
          probes.push({ ready: 0, at: Date.now() });
        }
        await sleep(10);
      }
    })();
    const traffic = (async () => {
      while (running) {
        try {
          const response = await fetch(`${url}/healthz`);
          await response.arrayBuffer();
          requests.push({ ok: response.status === 200, at: Date.now() });
        } catch {
          requests.push({ ok: false, at: Date.now() });
        }
        await sleep(10);
      }
    })();
    try {
      while (!probes.some((entry) => entry.ready === 200)) await sleep(10);
      await gateway.stop('SIGTERM');
    } finally {
      running = false;
      await Promise.all([probe, traffic]);
    }
    const notReadyAt = probes.find((entry) => entry.ready === 503)?.at;
    const firstRefused = requests.find((request) => !request.ok);
    expect(notReadyAt).toBeDefined();
    expect(firstRefused).toBeDefined();
    expect(notReadyAt!).toBeLessThan(firstRefused!.at);
    expect(
      requests.filter((request) => request.ok && request.at > notReadyAt!).length,
    ).toBeGreaterThan(0);
  });

  it('a service reports NOT_SERVING to a health watcher before it refuses the first call, and serves meanwhile', async () => {
    const user = system.apps.user!;
    const seen: { status: ServingStatus; at: number }[] = [];
    const stopWatching = watchHealth(user.address, 'user.v1.UserService', (status) =>
      seen.push({ status, at: Date.now() }),
    );
    // No retries: the test counts what the draining server itself answers.
    const client = createServiceClient(UserServiceClient, user.address, {
      deadlineMs: 1_000,
      retry: false,
    });
    const calls: { ok: boolean; at: number; code?: number }[] = [];
    let stopTook: number | undefined;
    let calling = true;
    const loop = (async () => {
      while (calling) {
        try {
          await client.getUser({ id: randomUUID() });
          calls.push({ ok: true, at: Date.now() });
        } catch (error) {
          const code = (error as ServiceError).code;
          // NOT_FOUND is an answer: the service served the call.
          calls.push({ ok: code === status.NOT_FOUND, at: Date.now(), code });
        }
        await sleep(10);
      }
    })();
    try {
      while (!seen.some((entry) => entry.status === 'SERVING')) await sleep(10);
      const stopping = Date.now();
      await user.stop('SIGTERM');
      // The drain delay, then a prompt exit: the open Watch stream does not hold it for the
      // whole shutdown grace (10 s).
      stopTook = Date.now() - stopping;
    } finally {
      calling = false;
      await loop;
      client.close();
      stopWatching();
    }

    expect(stopTook).toBeLessThan(8_000);
    const notServingAt = seen.find((entry) => entry.status === 'NOT_SERVING')?.at;
    const firstRefused = calls.find((call) => !call.ok);
    expect(notServingAt).toBeDefined();
    expect(firstRefused).toBeDefined();
    expect(notServingAt!).toBeLessThan(firstRefused!.at);
    // It kept serving after saying it was going away.
    expect(calls.filter((call) => call.ok && call.at > notServingAt!).length).toBeGreaterThan(0);
  });
});
