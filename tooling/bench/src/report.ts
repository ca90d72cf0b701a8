import { MANIFEST } from '@repo/system/system';
import type { EventsResult } from './events';
import type { LoadResult } from './load';

export interface ScenarioReport extends LoadResult {
  id: string;
  title: string;
  connections: number;
  /** Each round's req/s, in round order (absent from reports written before it was kept). */
  roundRequestsPerSecond?: number[];
  processes: Record<string, { cpuPercent: number; peakRssMb: number }>;
}

export interface Report {
  date: string;
  machine: { cores: number; cpu: string; node: string; memoryGb: number };
  options: {
    durationSec: number;
    rounds: number;
    warmupSec: number;
    connections: number;
    orderConnections: number;
    /** R1 and R2 (absent from reports written before they existed). */
    registrationConnections?: number;
    /** Hashes each user service runs at once (HASH_CONCURRENCY). */
    hashConcurrency?: number;
    users: number;
    quick: boolean;
  };
  scenarios: ScenarioReport[];
  /** Products whose stock does not match the orders that took it (must be 0). */
  oversold: number;
  /** Spawn to ready, per app, with its database already up. */
  readyMs: Record<string, number>;
  /**
   * With --compare-node: the other runtime's version; with --compare-tree: `tree <commit>`. Its
   * scenarios have ids `<id>@other`.
   */
  compareNode?: string;
  /**
   * With --compare-tracing: the sampling ratio of each tracing system (its scenarios have ids
   * `<scenario>@<level id>`) and what their OTLP exports came to.
   */
  tracing?: {
    levels: { id: string; ratio: number }[];
    /** The A/A control: a second system that does not trace, measured like the tracing ones. */
    control?: string;
    exported: { requests: number; bytes: number };
  };
  /** E1 (events through outbox -> broker -> inbox), per transport and load. */
  events?: EventsResult[];
}

/** Tracing's budget: throughput kept against tracing off, at the default ratio and at 100%. */
const TRACING_BUDGET = (ratio: number) => (ratio >= 1 ? 0.75 : 0.9);

/**
 * S3 / B1 before the services wrote events: tooling/bench/results/latest.md as committed in
 * 2abbdd4 (the full run of 2026-11-29T11:24:29Z, S3 561 req/s, B1 3942 req/s). Placing an order
 * now also writes OrderPlaced into the order service's outbox; S3 may lose at most
 * S3_OUTBOX_BUDGET of this ratio to it. With `--compare-tree <a checkout before events>` the
 * budget is checked against that system's S3 in the same rounds instead, which is what to trust on
 * a shared machine: B1 alone swings by a quarter from one run to the next there.
 */
const S3_PER_B1_BEFORE_EVENTS = 561 / 3942;
const S3_OUTBOX_BUDGET = 0.1;

const ratio = (a: ScenarioReport | undefined, b: ScenarioReport | undefined) =>
  a && b && b.requestsPerSecond > 0 ? a.requestsPerSecond / b.requestsPerSecond : undefined;

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return sorted.length % 2
    ? sorted[Math.floor(middle)]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/**
 * `a`'s req/s over the mean of `of`'s, round by round (scenarios measured in the same rounds): the
 * median and the range. A ratio per round compares the same stretch of time; the median leaves out
 * a round that something else on the machine spoilt for one of them, which a ratio of merged req/s
 * takes in whole.
 */
function roundRatios(
  a: ScenarioReport | undefined,
  of: readonly (ScenarioReport | undefined)[],
): { median: number; min: number; max: number } | undefined {
  const rounds = a?.roundRequestsPerSecond;
  if (!rounds || of.some((s) => s?.roundRequestsPerSecond?.length !== rounds.length))
    return undefined;
  const ratios = rounds.flatMap((value, round) => {
    const reference =
      of.reduce((sum, s) => sum + s!.roundRequestsPerSecond![round]!, 0) / of.length;
    return reference > 0 ? [value / reference] : [];
  });
  return ratios.length > 0
    ? { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) }
    : undefined;
}

const fmtRange = (r: ReturnType<typeof roundRatios>) =>
  r ? `${fmt(r.median)} (${fmt(r.min)}-${fmt(r.max)})` : '–';
/** Registration scenarios: each request is a scrypt hash. */
const HASHING = new Set(['r1', 'r2']);
/** What one scrypt hash holds while it runs: 128 x N x r bytes (apps/user/src/domain/password.ts). */
const SCRYPT_MB = 32;
const fmt = (value: number | undefined) => (value === undefined ? '–' : value.toFixed(2));
/** Every app, the gateway first (the public one, then the services in start order). */
const APPS_GATEWAY_FIRST = [
  ...MANIFEST.filter((app) => app.kind === 'gateway'),
  ...MANIFEST.filter((app) => app.kind !== 'gateway'),
].map((app) => app.name);
/** A scenario's processes of one app: `gateway`, `gateway#2`... (not `gateway@20`, another runtime's). */
const processesOf = (s: ScenarioReport, app: string) =>
  Object.entries(s.processes)
    .filter(([name]) => name === app || name.startsWith(`${app}#`))
    .map(([, p]) => p);

/**
 * A markdown table laid out the way Prettier lays it out (cells padded to the column's width,
 * numbers right-aligned), so the saved report passes `pnpm format:check` as written.
 */
export function markdownTable(
  header: readonly string[],
  align: readonly ('left' | 'right')[],
  rows: readonly (readonly (string | number)[])[],
): string[] {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, column) =>
    Math.max(3, ...cells.map((row) => [...(row[column] ?? '')].length)),
  );
  const pad = (text: string, column: number) => {
    const fill = ' '.repeat(widths[column]! - [...text].length);
    return align[column] === 'right' ? fill + text : text + fill;
  };
  const line = (row: readonly string[]) => `| ${row.map(pad).join(' | ')} |`;
  const rule = widths.map((width, column) =>
    align[column] === 'right' ? `${'-'.repeat(width - 1)}:` : '-'.repeat(width),
  );
  return [line(cells[0]!), line(rule), ...cells.slice(1).map(line)];
}

const percentChange = (kept: number) =>
  `${kept >= 1 ? '+' : '-'}${Math.abs(Math.round((kept - 1) * 100))}%`;

/**
 * E1's table (one row per transport and load) and S3 against its figure before events; nothing
 * for what did not run.
 */
function renderEvents(events: readonly EventsResult[], s3Kept: number | undefined): string[] {
  const lines: string[] = [];
  if (events.length > 0) {
    lines.push(
      ...markdownTable(
        [
          'E1 events: outbox -> broker -> inbox',
          'load',
          'events',
          'written/s',
          'applied/s',
          'p50 ms',
          'p90 ms',
          'p99 ms',
          'max ms',
          'lost',
          'CPU % (of one core)',
        ],
        [
          'left',
          'left',
          'right',
          'right',
          'right',
          'right',
          'right',
          'right',
          'right',
          'right',
          'left',
        ],
        events.map((e) => [
          `E1 ${e.transport}`,
          e.load === 'registrations'
            ? `registrations (${e.failed} not 201)`
            : 'burst into the outbox',
          e.events,
          e.writtenPerSecond,
          e.appliedPerSecond,
          e.p50,
          e.p90,
          e.p99,
          e.max,
          e.lost,
          Object.entries(e.processes)
            .map(([name, cpu]) => `${name} ${cpu}`)
            .join(', '),
        ]),
      ),
    );
    lines.push('');
  }
  if (s3Kept !== undefined) {
    lines.push(
      ...markdownTable(
        ['S3 / B1 (req/s)', 'before events', 'now', 'change'],
        ['left', 'right', 'right', 'right'],
        [
          [
            'S3 POST /v1/orders, OrderPlaced in the outbox',
            fmt(S3_PER_B1_BEFORE_EVENTS),
            fmt(s3Kept * S3_PER_B1_BEFORE_EVENTS),
            percentChange(s3Kept),
          ],
        ],
      ),
    );
    lines.push('');
  }
  return lines;
}

export function renderMarkdown(report: Report): string {
  const byId = new Map(report.scenarios.map((s) => [s.id, s]));
  const lines: string[] = [];
  lines.push(`### Benchmark ${report.options.quick ? '(quick smoke run)' : ''}`.trim());
  lines.push('');
  lines.push(
    `${report.date} · ${report.machine.cores} cores (${report.machine.cpu}) · ${report.machine.memoryGb} GiB · Node ${report.machine.node} · ` +
      `${report.options.warmupSec} s warm-up, then ${report.options.durationSec} s per scenario in ${report.options.rounds} interleaved round${report.options.rounds === 1 ? '' : 's'} · load generator on the same machine · ${report.options.users} users`,
  );
  lines.push('');
  lines.push(
    ...markdownTable(
      [
        'scenario',
        'conns',
        'req/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'errors',
        'non-2xx',
        'CPU % (of one core)',
        'peak RSS MB',
      ],
      ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left', 'left'],
      report.scenarios.map((s) => [
        s.title,
        s.connections,
        s.requestsPerSecond,
        s.p50,
        s.p90,
        s.p99,
        s.errors,
        s.non2xx,
        Object.entries(s.processes)
          .map(([name, p]) => `${name} ${p.cpuPercent}`)
          .join(', '),
        Object.entries(s.processes)
          .map(([name, p]) => `${name} ${p.peakRssMb}`)
          .join(', '),
      ]),
    ),
  );
  lines.push('');
  const s1 = byId.get('s1');
  const s2 = byId.get('s2');
  const s3 = byId.get('s3');
  const b0 = byId.get('b0');
  const b1 = byId.get('b1');
  const b2 = byId.get('b2');
  const x1 = byId.get('x1');
  const r1 = byId.get('r1');
  const r2 = byId.get('r2');
  lines.push(
    ...markdownTable(
      ['ratio (req/s)', 'value'],
      ['left', 'right'],
      [
        ['S1 / B1', fmt(ratio(s1, b1))],
        ['S2 / B1', fmt(ratio(s2, b1))],
        ['S3 / B1', fmt(ratio(s3, b1))],
        ['S1 / B0', fmt(ratio(s1, b0))],
        ['S2 / B0', fmt(ratio(s2, b0))],
        ['S1 / B2 (what the gateway costs)', fmt(ratio(s1, b2))],
      ],
    ),
  );
  lines.push('');

  // Events, and what writing them costs the order path.
  const s3Before = report.compareNode?.startsWith('tree ') ? byId.get('s3@other') : undefined;
  const s3Kept = s3Before
    ? ratio(s3, s3Before)
    : ratio(s3, b1) === undefined
      ? undefined
      : ratio(s3, b1)! / S3_PER_B1_BEFORE_EVENTS;
  // With --compare-tree the compare table says it in req/s; this one derives from the constant.
  lines.push(...renderEvents(report.events ?? [], s3Before ? undefined : s3Kept));

  // Scale: the same load through 2 replicas of one app against 1, measured in the same rounds.
  const scale = (
    [
      ['gateway: S1 -> X1, GET /v1/products/:id', 'gateway', s1, x1],
      ['user: R1 -> R2, POST /v1/users (registrations)', 'user', r1, r2],
    ] as const
  ).flatMap(([what, app, one, two]) => (one && two ? [{ what, app, one, two }] : []));
  if (scale.length > 0) {
    const both = (value: (s: ScenarioReport) => number, one: ScenarioReport, two: ScenarioReport) =>
      `${value(one)} / ${value(two)}`;
    const cpuOf = (s: ScenarioReport, app: string) =>
      processesOf(s, app)
        .map((p) => p.cpuPercent)
        .join(' + ');
    lines.push(
      ...markdownTable(
        [
          'scaled app: 1 -> 2 replicas',
          'conns',
          'req/s 1',
          'req/s 2',
          'ratio',
          'p99 ms 1 / 2',
          '503s 1 / 2',
          'CPU % of its replicas 1 / 2',
        ],
        ['left', 'right', 'right', 'right', 'right', 'left', 'left', 'left'],
        scale.map(({ what, app, one, two }) => [
          what,
          two.connections,
          one.requestsPerSecond,
          two.requestsPerSecond,
          fmt(ratio(two, one)),
          both((s) => s.p99, one, two),
          both((s) => s.shed, one, two),
          // Per replica: how evenly the two shared the load.
          `${cpuOf(one, app)} / ${cpuOf(two, app)}`,
        ]),
      ),
    );
    lines.push('');
  }

  if (report.compareNode) {
    // --compare-tree names the other system `tree <commit>`; --compare-node by its Node version.
    const hereLabel = report.compareNode.startsWith('tree ') ? 'this tree' : report.machine.node;
    const peak = (s: ScenarioReport | undefined, suffix = '') =>
      s
        ? Object.entries(s.processes)
            .filter(([name]) => name.includes('@') === (suffix !== ''))
            .map(([name, p]) => `${name.replace(/@.*$/, '')} ${p.peakRssMb}`)
            .join(', ')
        : '–';
    lines.push(
      ...markdownTable(
        [
          'scenario',
          `req/s ${hereLabel}`,
          `req/s ${report.compareNode}`,
          'ratio',
          `p99 ms ${hereLabel}`,
          `p99 ms ${report.compareNode}`,
          `peak RSS MB ${hereLabel}`,
          `peak RSS MB ${report.compareNode}`,
        ],
        ['left', 'right', 'right', 'right', 'right', 'right', 'left', 'left'],
        ['b1', 's1', 's2', 's3'].flatMap((id) => {
          const here = byId.get(id);
          const there = byId.get(`${id}@other`);
          if (!here || !there) return [];
          return [
            [
              id.toUpperCase(),
              here.requestsPerSecond,
              there.requestsPerSecond,
              fmt(ratio(here, there)),
              here.p99,
              there.p99,
              peak(here),
              peak(there, '@'),
            ],
          ];
        }),
      ),
    );
    lines.push('');
  }

  // Tracing: the same scenario on systems that trace, measured in the same rounds.
  const tracing = report.tracing;
  const cpuPerRequest = (s: ScenarioReport) =>
    Math.round(
      (Object.values(s.processes).reduce((sum, p) => sum + p.cpuPercent, 0) * 1e4) /
        Math.max(1, s.requestsPerSecond),
    );
  /** What a tracing system is compared with: the system off, and the A/A control with it. */
  const untraced = (id: string) =>
    [byId.get(id), tracing?.control ? byId.get(`${id}@${tracing.control}`) : undefined].filter(
      (s): s is ScenarioReport => s !== undefined,
    );
  /**
   * A tracing system's req/s kept, and how it is measured: the median per round against the
   * untraced systems, or (a report without rounds) merged req/s against tracing off.
   */
  const tracingKept = (id: string, level: string) => {
    const s = byId.get(`${id}@${level}`);
    const perRound = roundRatios(s, untraced(id))?.median;
    return perRound === undefined
      ? { kept: ratio(s, byId.get(id)), how: '' }
      : { kept: perRound, how: ` (median per round, against ${untraced(id).length} untraced)` };
  };
  if (tracing) {
    lines.push(
      ...markdownTable(
        [
          'tracing',
          'sampled',
          'req/s',
          'ratio to off',
          'per round: median (range)',
          'CPU µs per request (its two apps)',
          'p99 ms',
          'peak RSS MB',
        ],
        ['left', 'right', 'right', 'right', 'left', 'right', 'right', 'left'],
        ['s1', 's2'].flatMap((id) => {
          const off = byId.get(id);
          if (!off) return [];
          const control = tracing.control ? byId.get(`${id}@${tracing.control}`) : undefined;
          const rows = [{ label: 'off', sampled: '–', s: off, perRound: '–' }];
          if (control) {
            rows.push({
              label: 'off, A/A control',
              sampled: '–',
              s: control,
              perRound: fmtRange(roundRatios(control, [off])),
            });
          }
          for (const level of tracing.levels) {
            const s = byId.get(`${id}@${level.id}`);
            if (s) {
              rows.push({
                label: 'on',
                sampled: `${level.ratio * 100}%`,
                s,
                perRound: fmtRange(roundRatios(s, untraced(id))),
              });
            }
          }
          return rows.map(({ label, sampled, s, perRound }) => [
            `${id.toUpperCase()} ${label}`,
            sampled,
            s.requestsPerSecond,
            fmt(ratio(s, off)),
            perRound,
            cpuPerRequest(s),
            s.p99,
            Object.entries(s.processes)
              .map(([name, p]) => `${name.replace(/@.*$/, '')} ${p.peakRssMb}`)
              .join(', '),
          ]);
        }),
      ),
    );
    lines.push('');
    if (tracing.control) {
      lines.push(
        'Per round: the A/A control against tracing off, a tracing system against the mean of both ' +
          'untraced systems, each round measured in the same stretch of time (the order of the ' +
          'systems rotates every round). The targets take the median; the control shows how far ' +
          'two identical systems differ.',
      );
      lines.push('');
    }
    lines.push(
      `Exported to the OTLP sink: ${tracing.exported.requests} requests, ${(tracing.exported.bytes / 2 ** 20).toFixed(1)} MiB.`,
    );
    lines.push('');
  }

  // Over every replica of the app, in the scenarios that do (hashing) or do not (the rest) register.
  const appPeak = (app: string, hashing = false) =>
    Math.max(
      0,
      ...report.scenarios
        .filter((s) => HASHING.has(s.id) === hashing)
        .flatMap((s) => processesOf(s, app).map((p) => p.peakRssMb)),
    );
  const hashes = report.options.hashConcurrency ?? 1;
  const hashingBudget = 150 + SCRYPT_MB * hashes;
  const targets: [string, boolean | undefined, string][] = [
    [
      'S1 >= 0.8 x B1 req/s',
      ratio(s1, b1) === undefined ? undefined : ratio(s1, b1)! >= 0.8,
      fmt(ratio(s1, b1)),
    ],
    [
      'S2 >= 0.7 x B1 req/s',
      ratio(s2, b1) === undefined ? undefined : ratio(s2, b1)! >= 0.7,
      fmt(ratio(s2, b1)),
    ],
    ['S1 p99 < 60 ms', s1 ? s1.p99 < 60 : undefined, s1 ? `${s1.p99} ms` : '–'],
    [
      'S3 p99 < 150 ms at 20 connections',
      s3 ? s3.p99 < 150 : undefined,
      s3 ? `${s3.p99} ms at ${s3.connections}` : '–',
    ],
    ...(
      [
        ['X1', 'gateway', x1],
        ['R2', 'user', r2],
      ] as const
    ).map(([id, app, s]): [string, boolean | undefined, string] => {
      const cpu = s ? processesOf(s, app).map((p) => p.cpuPercent) : [];
      const total = cpu.reduce((sum, value) => sum + value, 0);
      return [
        `${id}: each of 2 ${app} replicas does >= 1/3 of their work (CPU)`,
        s ? cpu.length === 2 && Math.min(...cpu) * 3 >= total : undefined,
        s ? `${cpu.join(' + ')} % of a core` : '–',
      ];
    }),
    ...(tracing?.levels ?? []).flatMap((level) =>
      ['s1', 's2'].map((id): [string, boolean | undefined, string] => {
        const { kept, how } = tracingKept(id, level.id);
        const budget = TRACING_BUDGET(level.ratio);
        return [
          `${id.toUpperCase()} tracing ${level.ratio * 100}% >= ${budget} x tracing off req/s`,
          kept === undefined ? undefined : kept >= budget,
          kept === undefined ? '–' : `${fmt(kept)}${how}`,
        ];
      }),
    ),
    ...(report.events ?? []).map((e): [string, boolean, string] => [
      `E1 ${e.transport} ${e.load}: every event applied once`,
      e.lost === 0,
      `${e.events} events, ${e.lost} lost`,
    ]),
    [
      s3Before
        ? `S3 keeps >= ${1 - S3_OUTBOX_BUDGET} x S3 of ${report.compareNode} (same rounds)`
        : `S3 keeps >= ${1 - S3_OUTBOX_BUDGET} x its S3 / B1 before events (${fmt(S3_PER_B1_BEFORE_EVENTS)})`,
      s3Kept === undefined ? undefined : s3Kept >= 1 - S3_OUTBOX_BUDGET,
      s3Kept === undefined
        ? '–'
        : `${fmt(s3Before ? s3Kept : ratio(s3, b1))}, ${percentChange(s3Kept)}`,
    ],
    ['no oversell', report.oversold === 0, `${report.oversold} products off`],
    [
      'no errors or unexpected statuses',
      report.scenarios.every((s) => s.errors === 0 && s.non2xx === 0),
      '',
    ],
    ...APPS_GATEWAY_FIRST.map((app): [string, boolean | undefined, string] => [
      `${app} peak RSS < 150 MB`,
      appPeak(app) ? appPeak(app) < 150 : undefined,
      `${appPeak(app)} MB`,
    ]),
    [
      `user peak RSS registering < 150 + ${SCRYPT_MB} MB x ${hashes} hashes at once`,
      appPeak('user', true) ? appPeak('user', true) < hashingBudget : undefined,
      `${appPeak('user', true)} MB`,
    ],
    ...Object.entries(report.readyMs).map(([app, ms]): [string, boolean, string] => [
      `${app} ready < 1 s after its database`,
      ms < 1000,
      `${ms} ms`,
    ]),
  ];
  lines.push(
    ...markdownTable(
      ['target', 'result', 'measured'],
      ['left', 'left', 'left'],
      targets.map(([name, ok, measured]) => [
        name,
        ok === undefined ? 'not run' : ok ? 'PASS' : 'FAIL',
        measured,
      ]),
    ),
  );
  lines.push('');
  return lines.join('\n');
}
