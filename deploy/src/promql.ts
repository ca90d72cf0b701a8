import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

/**
 * The PromQL of deploy/observability (dashboards and alert rules) and what checks it: promtool for
 * the syntax, and the metric names each expression reads against the names the apps expose, so a
 * renamed metric fails here instead of leaving a dashboard empty.
 */

export const OBSERVABILITY_DIR = join(__dirname, '..', 'observability');
export const PROMETHEUS_DIR = join(OBSERVABILITY_DIR, 'prometheus');
export const DASHBOARDS_DIR = join(OBSERVABILITY_DIR, 'grafana', 'dashboards');

/** Series Prometheus makes itself: scrape health and the alerts' state. */
export const PROMETHEUS_SERIES = ['up', 'ALERTS', 'ALERTS_FOR_STATE'];

/** What Grafana replaces in a query before Prometheus sees it, with values a check can use. */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: '5m',
  $__interval: '1m',
  $__range: '1h',
};

export interface Expression {
  /** Where it is: `gateway.json: Request rate (A)`, `alerts.yml: ErrorBudgetBurnFast`. */
  where: string;
  expr: string;
}

interface Panel {
  title?: string;
  targets?: { refId?: string; expr?: string }[];
  panels?: Panel[];
}

/** Every query of every dashboard, Grafana's variables replaced. */
export function dashboardExpressions(dir = DASHBOARDS_DIR): Expression[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .flatMap((file) => {
      const dashboard = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { panels: Panel[] };
      const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
      return panels.flatMap((panel) =>
        (panel.targets ?? []).map((target) => ({
          where: `${file}: ${panel.title} (${target.refId})`,
          expr: withoutGrafanaVariables(target.expr ?? ''),
        })),
      );
    });
}

export interface RuleGroup {
  name: string;
  rules: { record?: string; alert?: string; expr: string }[];
}

export function ruleGroups(file = join(PROMETHEUS_DIR, 'alerts.yml')): RuleGroup[] {
  return (parse(readFileSync(file, 'utf8')) as { groups: RuleGroup[] }).groups;
}

export function ruleExpressions(groups = ruleGroups()): Expression[] {
  return groups.flatMap((group) =>
    group.rules.map((rule) => ({
      where: `alerts.yml: ${rule.alert ?? rule.record}`,
      expr: rule.expr,
    })),
  );
}

export function withoutGrafanaVariables(expr: string): string {
  const replaced = expr.replace(/\$__\w+/g, (name) => GRAFANA_VARIABLES[name] ?? name);
  if (replaced.includes('$'))
    throw new Error(`${expr}: a Grafana variable the checks do not know (GRAFANA_VARIABLES)`);
  return replaced;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names an expression reads. Strings, label matchers, ranges and the label lists of
 * `by`/`without`/`on`/`ignoring`/`group_*` go first; then an identifier followed by `(` is a
 * function, and any other (not a keyword) is a metric. A selector without a metric name
 * (`{__name__=~"..."}`) reads names no check can list, and is refused.
 */
export function metricNames(expr: string): string[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/(^|[^\w:])\{/g, () => {
      throw new Error(`${expr}: a selector without a metric name`);
    })
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\w+/g, ' ')
    .replace(/(^|[^\w:.])\d+(\.\d+)?(e[+-]?\d+)?/gi, '$1 ');
  const names = new Set<string>();
  for (const [, name, call] of text.matchAll(/([a-zA-Z_:][\w:]*)\s*(\()?/g)) {
    if (!call && !KEYWORDS.has(name!.toLowerCase())) names.add(name!);
  }
  return [...names].sort();
}

/**
 * The series names of metrics as a query sees them: a histogram `x` is `x_bucket`, `x_sum` and
 * `x_count`; a summary `x` is `x`, `x_sum` and `x_count`.
 */
function seriesNames(metrics: { name: string; type: string }[]): string[] {
  return metrics
    .flatMap(({ name, type }) => {
      switch (type) {
        case 'histogram':
          return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
        case 'summary':
          return [name, `${name}_sum`, `${name}_count`];
        default:
          return [name];
      }
    })
    .sort();
}

/** The series names a prom-client registry exposes. */
export async function exposedNames(registry: {
  getMetricsAsJSON(): Promise<{ name: string; type: unknown }[]>;
}): Promise<string[]> {
  const metrics = await registry.getMetricsAsJSON();
  return seriesNames(metrics.map(({ name, type }) => ({ name, type: String(type) })));
}

/** The series names of a scrape (the text format's `# TYPE name type` lines). */
export function exposedInScrape(text: string): string[] {
  return seriesNames(
    [...text.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map(([, name, type]) => ({
      name: name!,
      type: type!,
    })),
  );
}

/**
 * The metric names of `expressions` that the apps do not expose, one line each: a name a selector
 * reads from some job (`x{job="user"}`, `x{job=~"user|order"}`) must be exposed by each of them; a
 * name read from no job in particular, by one app at least. Recorded rules' names and Prometheus's
 * own series are known without being exposed.
 */
export function unknownMetricNames(
  expressions: Expression[],
  exposed: Record<string, string[]>,
  recorded: string[],
): string[] {
  const known = new Set([...recorded, ...PROMETHEUS_SERIES]);
  return expressions.flatMap(({ where, expr }) =>
    metricNames(expr).flatMap((name) => {
      if (known.has(name)) return [];
      const jobs = jobsOf(expr, name);
      const missing = (jobs ?? Object.keys(exposed)).filter((job) => !exposed[job]?.includes(name));
      if (jobs === undefined && missing.length < Object.keys(exposed).length) return [];
      return missing.map((job) => `${where}: ${job} exposes no ${name}`);
    }),
  );
}

/** The names the alert rules record (`slo:errors:ratio_rate5m`). */
export function recordedNames(groups = ruleGroups()): string[] {
  return groups.flatMap((group) =>
    group.rules.flatMap((rule) => (rule.record ? [rule.record] : [])),
  );
}

/**
 * Runs promtool (Debian's `prometheus` package). Without it the check fails, and says how to get
 * it: these checks are the only thing standing between a typo in a rule and an alert that never
 * fires.
 */
export function promtool(args: string[], cwd = PROMETHEUS_DIR): { ok: boolean; output: string } {
  try {
    const output = execFileSync('promtool', args, {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { ok: true, output };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT')
      throw new Error(
        'promtool is not installed: it checks and unit-tests the Prometheus rules and every ' +
          "dashboard query. It comes with Debian's prometheus package (`apt-get install -y " +
          'prometheus`; .ci/run installs it) or a Prometheus release archive.',
        { cause: error },
      );
    return { ok: false, output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

/**
 * The jobs (apps) a metric's selectors in an expression ask for: `x{job="user"}` -> user,
 * `x{job=~"user|order"}` -> user and order; undefined where a selector of it names no job.
 */
export function jobsOf(expr: string, name: string): string[] | undefined {
  const jobs = new Set<string>();
  const selector = new RegExp(`(?<![\\w:])${name}(\\{[^}]*\\})?(?![\\w:])`, 'g');
  for (const [, matchers] of expr.matchAll(selector)) {
    const job = /\bjob\s*(=~|=)\s*"([^"]*)"/.exec(matchers ?? '');
    if (!job) return undefined;
    for (const value of job[1] === '=~' ? job[2]!.split('|') : [job[2]!]) jobs.add(value);
  }
  return [...jobs].sort();
}
