// The dashboards and alert rules of deploy/observability read only metrics the running apps really
// expose: every metric name of every query is looked up in what each app's /metrics answers (the
// gateway's, and each service replica's), so renaming or dropping a metric in an app fails here.
// deploy/test/observability.test.ts makes the same check fast, on registries built in-process.
import type { AppName, RunningSystem } from '@repo/system/system';
import {
  dashboardExpressions,
  exposedInScrape,
  recordedNames,
  ruleExpressions,
  unknownMetricNames,
} from '../../../deploy/src/promql';
import { KEYBOARD, api, signUp, startTestSystem } from './system';

describe('the dashboards and alerts against the running system', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startTestSystem();
    const client = api(system.gatewayUrl!);
    const me = await signUp(client, 'dashboards');
    const order = { items: [{ productId: KEYBOARD, quantity: 1 }] };
    expect((await client.post('/v1/orders', order, me.token)).status).toBe(201);
  });

  afterAll(async () => {
    await system?.stop();
  });

  /** What every process of an app exposes, by series name. */
  const exposedBy = async (app: AppName) => {
    const scrapes = await Promise.all(
      system.replicas[app]!.map(async (process) => {
        const response = await fetch(process.metricsUrl);
        expect(response.status).toBe(200);
        return exposedInScrape(await response.text());
      }),
    );
    return [...new Set(scrapes.flat())].sort();
  };

  it('every metric a query reads is exposed by the apps its job matcher names', async () => {
    const exposed = {
      gateway: await exposedBy('gateway'),
      user: await exposedBy('user'),
      order: await exposedBy('order'),
    };
    // The scrapes are real: each app's own metrics are there.
    expect(exposed.gateway).toContain('http_request_duration_seconds_bucket');
    expect(exposed.user).toContain('grpc_server_calls_total');
    expect(exposed.order).toContain('grpc_client_retries_total');
    const expressions = [...dashboardExpressions(), ...ruleExpressions()];
    expect(unknownMetricNames(expressions, exposed, recordedNames())).toEqual([]);
    // And a metric only one app has, read from another, is caught.
    expect(
      unknownMetricNames(
        [{ where: 'x', expr: 'sum(db_pool_waiting_requests{job="gateway"})' }],
        exposed,
        [],
      ),
    ).toEqual(['x: gateway exposes no db_pool_waiting_requests']);
  });
});
