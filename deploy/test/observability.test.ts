import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import {
  createRegistry,
  dbPoolMetrics,
  grpcClientMetrics,
  grpcServerMetrics,
} from '@repo/service-kit/metrics';
import { eventsMetrics } from '@repo/events/metrics';
import { appManifest, loadManifest } from '@repo/system/manifest';
import { createMetrics } from '../../apps/gateway/src/metrics';
import {
  DASHBOARDS_DIR,
  OBSERVABILITY_DIR,
  PROMETHEUS_DIR,
  dashboardExpressions,
  exposedInScrape,
  exposedNames,
  jobsOf,
  metricNames,
  promtool,
  recordedNames,
  ruleExpressions,
  ruleGroups,
  unknownMetricNames,
  type Expression,
} from '../src/promql';

/**
 * deploy/observability checked without running Prometheus or Grafana: the rules unit-tested with
 * promtool, every PromQL expression of the dashboards and rules parsed by promtool, and every metric
 * they read held to the names the apps' own registries expose.
 */

/** The apps of the manifest (apps/*\/package.json's `service`): each has a job and a dashboard. */
const MANIFEST = loadManifest();
const APPS = MANIFEST.map((app) => app.name);
const manifest = (app: string) => appManifest(app, MANIFEST);

/** What @repo/events/metrics exposes; the dashboards and alerts of events read these. */
const EVENTS_METRICS = [
  'outbox_backlog_events',
  'outbox_oldest_unsent_seconds',
  'consumer_lag_events',
  'dead_letters_total',
];

/**
 * What each app's registry exposes, as queries name the series: the gateway's own (createMetrics),
 * and the services' as their main.ts assembles them from @repo/service-kit/metrics and
 * @repo/events/metrics (which startServiceEvents registers; their registries are built in main.ts,
 * which starts the server; tests/e2e/test/metrics.test.ts and dashboards.test.ts scrape the real
 * endpoints). Both services write an outbox; order consumes the user service's events.
 */
async function exposedByApp(): Promise<Record<string, string[]>> {
  // Every gRPC service of the manifest serves, has a pool and writes an outbox; one that calls
  // others has client metrics; the order service consumes the user service's events too.
  const service = (app: (typeof MANIFEST)[number]) => {
    const registry = createRegistry();
    grpcServerMetrics(registry, app.name);
    if (app.database) dbPoolMetrics(registry, () => ({ inUse: 0, idle: 0, waiting: 0 }));
    if (app.calls.length > 0) grpcClientMetrics(registry);
    eventsMetrics(registry, {
      outbox: { query: () => Promise.resolve({ rows: [], rowCount: 0 }) },
      transport: { pending: () => Promise.resolve(0) },
      consumers: app.name === 'order' ? ['order-users'] : [],
    });
    return exposedNames(registry);
  };
  return Object.fromEntries(
    await Promise.all(
      MANIFEST.map(async (app) => [
        app.name,
        app.kind === 'gateway' ? await exposedNames(createMetrics().registry) : await service(app),
      ]),
    ),
  );
}

const expressions = [...dashboardExpressions(), ...ruleExpressions()];
const unknownNames = (list: Expression[], exposed: Record<string, string[]>) =>
  unknownMetricNames(list, exposed, recordedNames());

describe('alert rules (observability/prometheus/alerts.yml)', () => {
  it('pass promtool check rules', () => {
    const result = promtool(['check', 'rules', 'alerts.yml']);
    expect(result.output).toContain('SUCCESS');
    expect(result.ok).toBe(true);
  });

  it('pass their unit tests (promtool test rules alerts.test.yml): each alert firing and not', () => {
    const result = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(result.output).toContain('SUCCESS');
    expect(result.ok).toBe(true);
    // Every alert is tested, firing (expected alerts listed) and not (an empty list).
    const tests = (
      parse(readFileSync(join(PROMETHEUS_DIR, 'alerts.test.yml'), 'utf8')) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
      }
    ).tests.flatMap((test) => test.alert_rule_test);
    const alerts = ruleGroups().flatMap((group) =>
      group.rules.flatMap((rule) => (rule.alert ? [rule.alert] : [])),
    );
    const firing = new Set(tests.filter((t) => t.exp_alerts.length).map((t) => t.alertname));
    const quiet = new Set(tests.filter((t) => !t.exp_alerts.length).map((t) => t.alertname));
    expect(alerts.filter((alert) => !firing.has(alert))).toEqual([]);
    expect(alerts.filter((alert) => !quiet.has(alert))).toEqual([]);
  });

  it('the unit tests have teeth: counting NOT_FOUND as a server error, or a lower burn rate, fails them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'alerts-'));
    try {
      copyFileSync(join(PROMETHEUS_DIR, 'alerts.test.yml'), join(dir, 'alerts.test.yml'));
      const rules = readFileSync(join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8');
      for (const [from, to] of [
        ['code=~"UNKNOWN|', 'code=~"NOT_FOUND|UNKNOWN|'],
        ['> (14.4 * 0.001)', '> (6 * 0.001)'],
      ] as const) {
        expect(rules).toContain(from);
        writeFileSync(join(dir, 'alerts.yml'), rules.replaceAll(from, to));
        const result = promtool(['test', 'rules', 'alerts.test.yml'], dir);
        expect(result.ok).toBe(false);
        expect(result.output).toContain('alertname: ErrorBudgetBurnFast');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every alert has a severity (page or ticket) and a summary', () => {
    for (const group of ruleGroups()) {
      for (const rule of group.rules as {
        alert?: string;
        labels?: Record<string, string>;
        annotations?: Record<string, string>;
        expr: string;
      }[]) {
        if (!rule.alert) continue;
        expect([rule.alert, rule.labels?.severity]).toEqual([
          rule.alert,
          expect.stringMatching(/^(page|ticket)$/),
        ]);
        expect(rule.annotations?.summary).toBeTruthy();
      }
    }
  });

  it('the events alerts watch the oldest unsent event, each consumer’s lag and its dead letters', () => {
    const events = ruleGroups().find((group) => group.name === 'events')!;
    expect(
      Object.fromEntries(events.rules.map((rule) => [rule.alert, metricNames(rule.expr)])),
    ).toEqual({
      OutboxBacklog: ['outbox_oldest_unsent_seconds'],
      ConsumerLag: ['consumer_lag_events'],
      DeadLetters: ['dead_letters_total'],
    });
    // Per consumer, and the replicas' identical readings of one consumer taken once (max).
    expect(events.rules.map((rule) => rule.expr)).toEqual([
      expect.stringMatching(/^max by \(job\) /),
      expect.stringMatching(/^max by \(job, consumer\) /),
      expect.stringMatching(/^sum by \(job, consumer\) /),
    ]);
  });
});

describe('Prometheus configuration', () => {
  it('prometheus.yml passes promtool check config and scrapes each app as its own job', () => {
    const result = promtool(['check', 'config', 'prometheus.yml']);
    expect(result.output).toContain('SUCCESS');
    expect(result.ok).toBe(true);
    const config = parse(readFileSync(join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string }[];
    };
    expect(config.scrape_configs.map((job) => job.job_name).sort()).toEqual([...APPS].sort());
  });

  it('prometheus-kubernetes.yml passes promtool check config (its discovery swapped for a static target)', () => {
    // Debian's promtool is built without Kubernetes discovery; everything else is checked as is.
    const config = parse(
      readFileSync(join(PROMETHEUS_DIR, 'prometheus-kubernetes.yml'), 'utf8'),
    ) as { scrape_configs: Record<string, unknown>[] };
    const job = config.scrape_configs[0]!;
    expect(job.kubernetes_sd_configs).toEqual([
      { role: 'pod', namespaces: { names: ['reference'] } },
    ]);
    delete job.kubernetes_sd_configs;
    job.static_configs = [{ targets: ['pod:9101'] }];
    const dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    try {
      copyFileSync(join(PROMETHEUS_DIR, 'alerts.yml'), join(dir, 'alerts.yml'));
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      const result = promtool(['check', 'config', 'prometheus.yml'], dir);
      expect(result.output).toContain('SUCCESS');
      expect(result.ok).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('every PromQL expression of the dashboards and rules', () => {
  it('is valid PromQL: promtool check rules on all of them as recording rules', () => {
    expect(expressions.length).toBeGreaterThan(50);
    const dir = mkdtempSync(join(tmpdir(), 'promql-'));
    try {
      const rules = expressions.map(({ expr }, index) => ({ record: `check:${index}`, expr }));
      writeFileSync(join(dir, 'all.yml'), stringify({ groups: [{ name: 'all', rules }] }));
      const result = promtool(['check', 'rules', '--lint=none', 'all.yml'], dir);
      const where = expressions.map(({ where }, index) => `check:${index} is ${where}`);
      expect(result.ok ? 'ok' : `${result.output}\n${where.join('\n')}`).toBe('ok');

      // And promtool refuses what is not PromQL.
      writeFileSync(
        join(dir, 'broken.yml'),
        stringify({
          groups: [{ name: 'broken', rules: [{ record: 'x', expr: 'sum by (job) (up' }] }],
        }),
      );
      expect(promtool(['check', 'rules', 'broken.yml'], dir).ok).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads only metrics the apps expose (each from the apps its job matcher names), recorded rules' or Prometheus's own", async () => {
    const exposed = await exposedByApp();
    expect(unknownNames(expressions, exposed)).toEqual([]);
  });

  it('the metric check has teeth: a renamed metric, or one read from an app that lacks it, fails', async () => {
    const exposed = await exposedByApp();
    const renamed = expressions.map(({ where, expr }) => ({
      where,
      expr: expr.replaceAll('http_requests_total', 'http_request_total'),
    }));
    expect(unknownNames(renamed, exposed)).toContain(
      'gateway.json: Request rate (A): gateway exposes no http_request_total',
    );
    expect(
      unknownNames(
        [{ where: 'x', expr: 'sum(db_pool_waiting_requests{job=~"gateway|user"})' }],
        exposed,
      ),
    ).toEqual(['x: gateway exposes no db_pool_waiting_requests']);
  });

  it('the events metrics are exposed by both services, and each is read', async () => {
    const exposed = await exposedByApp();
    expect(EVENTS_METRICS.filter((name) => !exposed.order!.includes(name))).toEqual([]);
    expect(exposed.user).toEqual(expect.arrayContaining(['outbox_backlog_events']));
    const used = new Set(expressions.flatMap(({ expr }) => metricNames(expr)));
    expect(EVENTS_METRICS.filter((name) => !used.has(name))).toEqual([]);
    // Without them, the events panels and alerts fail the check.
    const withoutEvents = Object.fromEntries(
      Object.entries(exposed).map(([app, names]) => [
        app,
        names.filter((name) => !EVENTS_METRICS.includes(name)),
      ]),
    );
    expect(unknownNames(expressions, withoutEvents)).toContain(
      'alerts.yml: ConsumerLag: order exposes no consumer_lag_events',
    );
  });

  it('a scrape names the same series as the registry it comes from', async () => {
    const { registry } = createMetrics();
    expect(exposedInScrape(await registry.metrics())).toEqual(await exposedNames(registry));
    expect(exposedInScrape(await registry.metrics())).toContain(
      'http_request_duration_seconds_bucket',
    );
  });

  it('metricNames finds the metrics, not functions, labels, durations or numbers', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{job="gateway",route=~"/v1/.+"}[5m]))) > 1e-3 and on (job) up offset 5m',
      ),
    ).toEqual(['http_request_duration_seconds_bucket', 'up']);
    expect(metricNames('slo:errors:ratio_rate1h / 0.001')).toEqual(['slo:errors:ratio_rate1h']);
    expect(() => metricNames('sum({__name__=~"http_.*"})')).toThrow(/without a metric name/);
    expect(jobsOf('a{job=~"user|order"} + a{job="gateway"}', 'a')).toEqual([
      'gateway',
      'order',
      'user',
    ]);
    expect(jobsOf('a{job="user"} + sum(a)', 'a')).toBeUndefined();
  });
});

describe('Grafana dashboards (observability/grafana/dashboards)', () => {
  const dashboards = Object.fromEntries(
    readdirSync(DASHBOARDS_DIR)
      .filter((file) => file.endsWith('.json'))
      .map((file) => [
        file.replace(/\.json$/, ''),
        readFileSync(join(DASHBOARDS_DIR, file), 'utf8'),
      ]),
  );
  const exprs = (name: string) =>
    dashboardExpressions().filter(({ where }) => where.startsWith(`${name}.json:`));

  it('one per app and a system overview, each with a unique uid', () => {
    expect(Object.keys(dashboards).sort()).toEqual([...APPS, 'overview'].sort());
    const uids = Object.values(dashboards).map((text) => (JSON.parse(text) as { uid: string }).uid);
    expect(new Set(uids).size).toBe(uids.length);
  });

  it.each(APPS)('%s: rate, error ratio, p50 and p99 per route or RPC, and saturation', (app) => {
    const queries = exprs(app).map(({ expr }) => expr);
    const per = manifest(app).kind === 'gateway' ? 'route' : 'method';
    const has = (pattern: RegExp) => queries.some((expr) => pattern.test(expr));
    expect(has(new RegExp(`sum by \\([^)]*${per}[^)]*\\) \\(rate\\(`))).toBe(true);
    expect(has(/ \/ sum by/)).toBe(true); // an error ratio
    expect(has(new RegExp(`histogram_quantile\\(0\\.5, sum by \\([^)]*${per}`))).toBe(true);
    expect(has(new RegExp(`histogram_quantile\\(0\\.99, sum by \\([^)]*${per}`))).toBe(true);
    for (const metric of [
      'nodejs_eventloop_lag_p99_seconds',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      ...(manifest(app).database ? ['db_pool_connections', 'db_pool_waiting_requests'] : []),
    ])
      expect([metric, has(new RegExp(`\\b${metric}\\{job="${app}"`))]).toEqual([metric, true]);
  });

  it('the overview has the events lag: every events metric, the gauges never summed over replicas', () => {
    const queries = exprs('overview').map(({ expr }) => expr);
    const read = new Set(queries.flatMap((expr) => metricNames(expr)));
    expect(EVENTS_METRICS.filter((name) => !read.has(name))).toEqual([]);
    // Every replica reads the same outbox and consumers: a sum would count them once per replica.
    expect(queries.filter((expr) => /\bsum\b[^(]*\((outbox_|consumer_lag)/.test(expr))).toEqual([]);
    expect(dashboards.overview).not.toContain('once events exist');
  });

  it('every panel reads a provisioned data source', () => {
    const provisioned = (
      parse(
        readFileSync(
          join(OBSERVABILITY_DIR, 'grafana', 'provisioning', 'datasources', 'datasources.yml'),
          'utf8',
        ),
      ) as { datasources: { uid: string; type: string }[] }
    ).datasources.map(({ uid, type }) => `${type}/${uid}`);
    expect(provisioned).toEqual(['prometheus/prometheus', 'jaeger/jaeger']);
    for (const [name, text] of Object.entries(dashboards)) {
      const used = [...text.matchAll(/"datasource": \{\s*"type": "(\w+)",\s*"uid": "(\w+)"/g)].map(
        ([, type, uid]) => `${type}/${uid}`,
      );
      expect(used.length).toBeGreaterThan(0);
      expect([name, used.filter((source) => !provisioned.includes(source))]).toEqual([name, []]);
    }
  });
});
