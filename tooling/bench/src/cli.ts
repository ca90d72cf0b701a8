#!/usr/bin/env node
// `pnpm bench`: the whole system in production mode under load, next to baselines measured in the
// same run, so every figure is also a ratio that survives a noisy shared machine.
//
//   pnpm bench                       full run: 3 s warm-up, then 20 s per scenario in 5 interleaved rounds
//   pnpm bench --quick               a few seconds per scenario, one round (CI's smoke test)
//   pnpm bench --duration 30 --rounds 6 --connections 100 --scenario b1,s1
//   pnpm bench --quick --check       exit 1 if any scenario had errors or unexpected statuses
//   pnpm bench --compare-node /path/to/node   also run B1, S1-S3 on a second system under that
//                                    Node.js binary, interleaved with the rest (runtime upgrades)
//   pnpm bench --compare-tree ../other-checkout   also run B1, S1-S3 on a second system started
//                                    from another checkout of this repository, built (a change's
//                                    cost against the commit before it, interleaved round by round)
//   pnpm bench --compare-tracing     also run S1 and S2 on two more systems, tracing at the
//                                    default sampling ratio and at 100% into a local OTLP sink,
//                                    interleaved with the rest (what tracing costs)
//   pnpm bench --compare-tracing --tracing-ratios 0,0.1   other ratios for those systems (0: what
//                                    tracing costs when nothing is sampled)
//   pnpm bench --scenario s1,x1,r1,r2   scale: S1 through 2 gateways (X1), registrations on 1 and
//                                    2 user services (R1, R2), on a second, scaled system
//   pnpm bench --scenario e1 --users 20   events through outbox -> broker -> inbox (E1), over the
//                                    first system's PostgreSQL broker and on a system using NATS
//   pnpm bench --save events         the report in results/events.md and .json, not latest.*
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import { OrderServiceClient } from '@repo/contracts/order/v1';
import { DEFAULT_TRACE_RATIO } from '@repo/service-kit/config';
import { exitGuard } from '@repo/system/lifecycle';
import { APPS, type AppName, type RunningSystem } from '@repo/system/system';
import { callLoad, httpLoad, summarize, type HttpRequestSpec, type LoadSample } from './load';
import {
  defaultTransport,
  measureEvents,
  natsEnvironment,
  removeNatsNamespace,
  type EventsResult,
} from './events';
import { startOtlpSink } from './otlp-sink';
import { startBaseline, type Baseline } from './processes';
import { ProcessSampler } from './procstats';
import { renderMarkdown, type Report, type ScenarioReport } from './report';
import { log, pick, scenarioRequest, startBenchSystem, stockMismatches } from './setup';

interface Options {
  /** Measured seconds per scenario, split over the rounds. */
  durationSec: number;
  rounds: number;
  warmupSec: number;
  connections: number;
  orderConnections: number;
  registrationConnections: number;
  /** Hashes one user service runs at once, as the bench expects it configured. */
  hashConcurrency: number;
  scenarios: Set<string>;
  users: number;
  quick: boolean;
  check: boolean;
  /** Another Node.js binary to run a second system on, measured side by side. */
  compareNode: string | undefined;
  compareTree: string | undefined;
  /** S1 and S2 also on systems that trace (at the default ratio, and everything). */
  compareTracing: boolean;
  /** Their sampling ratios (`--tracing-ratios`; the default ratio and 1 unless given). */
  tracingRatios: number[];
  /** E1's burst: events written into the outbox at once. */
  eventsBurst: number;
  /** The report's name in results/: `latest`, `quick` with --quick, or --save's. */
  save: string;
}

/**
 * --compare-tracing's systems: scenario ids `<id>@<id>`, processes `<app>@<id>`. The first traces
 * nothing: the A/A control, a second untraced system measured exactly like the traced ones, which
 * shows how far two systems differ when nothing does (and is half of what they are compared with).
 * Then one system per sampling ratio: `sampled` at the default ratio, `all` at 1, `ratio<n>` at
 * n% otherwise.
 */
function tracingLevels(ratios: number[]): { id: string; ratio: number | undefined }[] {
  return [
    { id: 'control', ratio: undefined },
    ...ratios.map((ratio) => ({
      id: ratio === DEFAULT_TRACE_RATIO ? 'sampled' : ratio === 1 ? 'all' : `ratio${ratio * 100}`,
      ratio,
    })),
  ];
}

const tracingLabel = (ratio: number | undefined) =>
  ratio === undefined ? 'A/A control, tracing off' : `tracing ${ratio * 100}%`;

/** In the order of a round: each scale variant right after the one it is compared with. */
const ALL_SCENARIOS = ['b0', 'b1', 's1', 'x1', 'b2', 's2', 's3', 'r1', 'r2', 'e1'];

/** HASH_CONCURRENCY of the user services (unset: the cores, at most 4, as apps/user/src/config.ts has it). */
const hashConcurrency = () =>
  Number(process.env.HASH_CONCURRENCY) || Math.min(4, availableParallelism());

/** `--tracing-ratios 0,0.1`: distinct sampling ratios from 0 to 1. */
function tracingRatios(raw: string | undefined): number[] {
  if (raw === undefined) return [DEFAULT_TRACE_RATIO, 1];
  // An empty part is refused, not read as 0 (Number('') is 0).
  const ratios = raw.split(',').map((part) => (part.trim() === '' ? NaN : Number(part)));
  if (
    ratios.some((ratio) => !Number.isFinite(ratio) || ratio < 0 || ratio > 1) ||
    new Set(ratios).size !== ratios.length
  ) {
    throw new Error(`--tracing-ratios takes distinct ratios from 0 to 1, e.g. 0,0.1 (got ${raw})`);
  }
  return ratios;
}

function parseOptions(argv: string[]): Options {
  const value = (flag: string) => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const number = (flag: string, fallback: number) => {
    const raw = value(flag);
    if (raw === undefined) return fallback;
    const parsed = Number(raw);
    if (!Number.isFinite(parsed) || parsed <= 0)
      throw new Error(`${flag} must be a positive number (got ${raw})`);
    return parsed;
  };
  const scenarios = (value('--scenario') ?? ALL_SCENARIOS.join(','))
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const scenario of scenarios) {
    if (!ALL_SCENARIOS.includes(scenario))
      throw new Error(`unknown scenario ${scenario}; known: ${ALL_SCENARIOS.join(', ')}`);
  }
  const save = value('--save') ?? (quick ? 'quick' : 'latest');
  if (!/^[\w-]+$/.test(save)) throw new Error(`--save takes a file name (got ${save})`);
  return {
    durationSec: number('--duration', quick ? 3 : 20),
    rounds: Math.round(number('--rounds', quick ? 1 : 5)),
    warmupSec: number('--warmup', quick ? 1 : 3),
    connections: number('--connections', 50),
    orderConnections: number('--order-connections', 20),
    // Registrations in flight: twice the hashes one user service runs at once, so two replicas
    // have every hashing slot busy while one holds at most as many waiting as running: its queue's
    // expected wait stays one hash long (it sheds with 503 beyond HASH_QUEUE_WAIT_MAX_MS).
    registrationConnections: number('--registration-connections', 2 * hashConcurrency()),
    hashConcurrency: hashConcurrency(),
    scenarios: new Set(scenarios),
    users: number('--users', quick ? 20 : 1000),
    quick,
    check: argv.includes('--check'),
    compareNode: value('--compare-node'),
    compareTree: value('--compare-tree'),
    compareTracing: argv.includes('--compare-tracing'),
    tracingRatios: tracingRatios(value('--tracing-ratios')),
    eventsBurst: number('--events-burst', quick ? 200 : 2000),
    save,
  };
}

interface Scenario {
  id: string;
  title: string;
  /**
   * Consecutive scenarios of one group (a scenario on each --compare-tracing system) take turns
   * going first: their order rotates by one every round.
   */
  group?: string;
  /** The processes whose CPU and memory the scenario is about. */
  processes: Record<string, number>;
  connections: number;
  load: (durationSec: number, connections: number) => Promise<LoadSample>;
}

/**
 * The scenarios of round `round` (from 1): `selected`, each run of consecutive scenarios of one
 * group rotated by `round - 1`. Measured always in the same order, a system would always follow
 * the same other one (and whatever that one left behind: a batch of spans being exported, garbage
 * to collect), or always come first after another scenario's load.
 */
function roundOrder(selected: Scenario[], round: number): Scenario[] {
  const order: Scenario[] = [];
  for (let start = 0; start < selected.length;) {
    const group = selected[start]!.group;
    let end = start + 1;
    while (group !== undefined && selected[end]?.group === group) end++;
    const run = selected.slice(start, end);
    const shift = (round - 1) % run.length;
    order.push(...run.slice(shift), ...run.slice(0, shift));
    start = end;
  }
  return order;
}

/**
 * Warms every scenario up once, then runs them all in `rounds` interleaved rounds (b0 b1 s1 ... b0
 * b1 s1 ...) of `duration / rounds` seconds each, and merges each scenario's rounds. On a shared
 * machine the speed drifts by tens of percent within a minute; interleaving puts a scenario and
 * its baseline in the same stretches of time, so their ratio holds still where one long run each
 * would compare two different machines. Each round's req/s is kept too, for ratios per round.
 */
async function measure(selected: Scenario[], options: Options): Promise<ScenarioReport[]> {
  for (const scenario of selected) {
    log(`${scenario.id}: warm-up ${options.warmupSec} s at ${scenario.connections} connections`);
    await scenario.load(options.warmupSec, scenario.connections);
  }
  const roundSec = options.durationSec / options.rounds;
  const samples = new Map(selected.map((scenario) => [scenario.id, [] as LoadSample[]]));
  const resources = new Map(
    selected.map((scenario) => [scenario.id, [] as ReturnType<ProcessSampler['stop']>[]]),
  );
  for (let round = 1; round <= options.rounds; round++) {
    for (const scenario of roundOrder(selected, round)) {
      const sampler = new ProcessSampler(scenario.processes);
      sampler.start();
      const sample = await scenario.load(roundSec, scenario.connections);
      resources.get(scenario.id)!.push(sampler.stop());
      samples.get(scenario.id)!.push(sample);
      const { requestsPerSecond, p99, errors, non2xx, shed } = summarize([sample]);
      log(
        `round ${round}/${options.rounds} ${scenario.id}: ${requestsPerSecond} req/s, p99 ${p99} ms, errors ${errors}, non-2xx ${non2xx}${shed ? ` (${shed} shed with 503)` : ''}`,
      );
    }
  }
  return selected.map((scenario) => {
    const rounds = resources.get(scenario.id)!;
    const processes = Object.fromEntries(
      Object.keys(scenario.processes).map((name) => [
        name,
        {
          cpuPercent: Math.round(
            rounds.reduce((sum, r) => sum + r[name]!.cpuPercent, 0) / rounds.length,
          ),
          peakRssMb: Math.max(...rounds.map((r) => r[name]!.peakRssMb)),
        },
      ]),
    );
    return {
      id: scenario.id,
      title: scenario.title,
      connections: scenario.connections,
      ...summarize(samples.get(scenario.id)!),
      roundRequestsPerSecond: samples
        .get(scenario.id)!
        .map((sample) => Math.round(sample.ok / sample.seconds)),
      processes,
    };
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  // Whatever ends the bench (an error, Ctrl-C, SIGTERM, its parent going away) stops what it started.
  const guard = exitGuard({ log, signalExitCode: 1 });
  const starting = startBenchSystem({ users: options.users, signal: guard.signal });
  guard.defer(async () => (await starting.catch(() => undefined))?.stop());
  // X1 and R2 run on a second system with two gateways and two user services, started beside the
  // first and kept running: both variants stay warm for the whole run and are measured in the same
  // rounds. (Taking a replica out and adding one back between scenarios would measure a cold
  // process each round.) Its users are the ones R2 registers.
  const startingScaled =
    options.scenarios.has('x1') || options.scenarios.has('r2')
      ? startBenchSystem({
          users: 0,
          replicas: { gateway: 2, user: 2 },
          signal: guard.signal,
          label: '[scaled] ',
        })
      : undefined;
  if (startingScaled)
    guard.defer(async () => (await startingScaled.catch(() => undefined))?.stop());
  // E1 over NATS runs on a system of its own whose apps all use the NATS transport, in a namespace
  // of its own (the first system's use the runner's default: a broker database on its
  // PostgreSQL). Its events are the ones E1 writes.
  const nats = natsEnvironment();
  const startingNats = options.scenarios.has('e1')
    ? startBenchSystem({ users: 0, signal: guard.signal, label: '[nats] ', env: nats })
    : undefined;
  if (startingNats) {
    guard.defer(async () => {
      await (await startingNats.catch(() => undefined))?.stop();
      await removeNatsNamespace(nats).catch((error: unknown) =>
        log(`could not remove the NATS streams of ${nats.EVENTS_NAMESPACE}: ${String(error)}`),
      );
    });
  }
  // The other system: another Node.js binary (--compare-node), or this repository at another
  // commit (--compare-tree: that checkout's own bench set-up starts its own apps), or both.
  const otherTree = options.compareTree && resolve(options.compareTree);
  const otherVersion = otherTree
    ? `tree ${execFileSync('git', ['-C', otherTree, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()}`
    : options.compareNode
      ? execFileSync(options.compareNode, ['--version'], { encoding: 'utf8' }).trim()
      : undefined;
  const otherSetup = otherTree && join(otherTree, 'tooling', 'bench', 'dist', 'setup.js');
  const startOther: typeof startBenchSystem = otherSetup
    ? // eslint-disable-next-line @typescript-eslint/no-require-imports
      (require(otherSetup) as { startBenchSystem: typeof startBenchSystem }).startBenchSystem
    : startBenchSystem;
  const startingOther = otherVersion
    ? startOther({
        users: options.users,
        signal: guard.signal,
        ...(options.compareNode ? { nodePath: options.compareNode } : {}),
        label: `[${otherVersion}] `,
      })
    : undefined;
  if (startingOther) guard.defer(async () => (await startingOther.catch(() => undefined))?.stop());
  // Tracing at the default ratio and at 100% (or --tracing-ratios), exporting to a sink in this
  // process, and the A/A control tracing nothing: systems of their own, started beside the first
  // and measured in the same rounds.
  const sink = options.compareTracing ? await startOtlpSink() : undefined;
  const levels = tracingLevels(options.tracingRatios);
  if (sink) guard.defer(() => sink.close());
  const startingTraced = sink
    ? levels.map((level) =>
        startBenchSystem({
          users: options.users,
          signal: guard.signal,
          label: `[${tracingLabel(level.ratio)}] `,
          env:
            level.ratio === undefined
              ? {}
              : {
                  OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
                  OTEL_TRACES_SAMPLER_ARG: String(level.ratio),
                },
        }),
      )
    : [];
  for (const starting of startingTraced) {
    guard.defer(async () => (await starting.catch(() => undefined))?.stop());
  }
  const baselines: Baseline[] = [];
  guard.defer(async () => {
    for (const baseline of baselines) await baseline.stop();
  });
  try {
    const bench = await starting;
    const scaled = await startingScaled;
    const { system } = bench;
    const gateway = bench.gatewayUrl;
    const productIds = bench.productIds;

    // Baselines (separate processes, so their CPU and memory are measured alike).
    const b0 = await startBaseline('raw-http', {});
    const naiveBackend = await startBaseline('naive-backend', {
      DATABASE_URL: bench.orderDatabaseUrl,
    });
    const naiveGateway = await startBaseline('naive-gateway', {
      BACKEND_ADDR: `127.0.0.1:${naiveBackend.port}`,
    });
    baselines.push(b0, naiveBackend, naiveGateway);

    // Every replica of the apps a scenario goes through, by label (`gateway`, `gateway#2`...).
    const pids = (apps: AppName[], running: RunningSystem = system) =>
      Object.fromEntries(
        apps.flatMap((app) =>
          (running.replicas[app] ?? []).map((replica) => [replica.label, replica.pid!]),
        ),
      );
    const http =
      (url: string, next: () => HttpRequestSpec) => (durationSec: number, connections: number) =>
        httpLoad({ url, connections, durationSec, next });
    const productById = (): HttpRequestSpec => ({
      method: 'GET',
      path: `/v1/products/${pick(productIds)}`,
    });
    const orderClient = new OrderServiceClient(
      system.apps.order!.address,
      credentials.createInsecure(),
    );

    const all: Scenario[] = [
      {
        id: 'b0',
        title: 'B0 raw node:http, same JSON',
        processes: { b0: b0.pid },
        connections: options.connections,
        load: http(`http://127.0.0.1:${b0.port}`, productById),
      },
      {
        id: 'b1',
        title: 'B1 naive Express -> grpc-js -> pg',
        processes: { 'b1-http': naiveGateway.pid, 'b1-grpc': naiveBackend.pid },
        connections: options.connections,
        load: http(`http://127.0.0.1:${naiveGateway.port}`, productById),
      },
      {
        id: 's1',
        title: 'S1 GET /v1/products/:id',
        processes: pids(['gateway', 'order']),
        connections: options.connections,
        load: http(gateway, scenarioRequest('s1', bench)),
      },
      ...(scaled
        ? [
            {
              id: 'x1',
              title: 'X1 S1 through 2 gateway replicas',
              processes: pids(['gateway', 'order'], scaled.system),
              connections: options.connections,
              load: http(scaled.gatewayUrl, scenarioRequest('s1', scaled)),
            },
          ]
        : []),
      {
        id: 'b2',
        title: 'B2 gRPC GetProduct, no gateway',
        processes: pids(['order']),
        connections: options.connections,
        load: (durationSec, concurrency) =>
          callLoad({
            concurrency,
            durationSec,
            call: () =>
              new Promise((resolve, reject) =>
                orderClient.getProduct(
                  { id: pick(productIds) },
                  new Metadata(),
                  { deadline: new Date(Date.now() + 5_000) },
                  (error, response) => (error ? reject(error) : resolve(response)),
                ),
              ),
          }),
      },
      {
        id: 's2',
        title: 'S2 GET /v1/users/me (JWT)',
        processes: pids(['gateway', 'user']),
        connections: options.connections,
        load: http(gateway, scenarioRequest('s2', bench)),
      },
      {
        id: 's3',
        title: 'S3 POST /v1/orders (1-3 lines)',
        processes: pids(['gateway', 'order', 'user']),
        connections: options.orderConnections,
        load: http(gateway, scenarioRequest('s3', bench)),
      },
      {
        id: 'r1',
        title: 'R1 POST /v1/users, 1 user replica',
        processes: pids(['gateway', 'user']),
        connections: options.registrationConnections,
        load: http(gateway, scenarioRequest('register', bench)),
      },
      ...(scaled
        ? [
            {
              id: 'r2',
              title: 'R2 POST /v1/users, 2 user replicas',
              processes: pids(['gateway', 'user'], scaled.system),
              connections: options.registrationConnections,
              load: http(scaled.gatewayUrl, scenarioRequest('register', scaled)),
            },
          ]
        : []),
    ];
    const other = startingOther ? await startingOther : undefined;
    if (other && otherVersion) {
      // The same baseline and scenarios on the other system: ids `<id>@other`, processes named
      // `<app>@<tag>` so they do not count towards this system's targets.
      const major = otherTree ? 'other' : otherVersion.replace(/^v/, '').split('.')[0];
      const otherBackend = await startBaseline(
        'naive-backend',
        { DATABASE_URL: other.orderDatabaseUrl },
        options.compareNode,
      );
      const otherGateway = await startBaseline(
        'naive-gateway',
        { BACKEND_ADDR: `127.0.0.1:${otherBackend.port}` },
        options.compareNode,
      );
      baselines.push(otherBackend, otherGateway);
      const otherPids = (apps: AppName[]) =>
        Object.fromEntries(apps.map((app) => [`${app}@${major}`, other.system.apps[app]!.pid!]));
      const otherProduct = (): HttpRequestSpec => ({
        method: 'GET',
        path: `/v1/products/${pick(other.productIds)}`,
      });
      const onOther = (id: string): Scenario | undefined => {
        const title = `${all.find((scenario) => scenario.id === id)!.title} [${otherTree ? otherVersion : `Node ${otherVersion}`}]`;
        switch (id) {
          case 'b1':
            return {
              id: 'b1@other',
              title,
              processes: {
                [`b1-http@${major}`]: otherGateway.pid,
                [`b1-grpc@${major}`]: otherBackend.pid,
              },
              connections: options.connections,
              load: http(`http://127.0.0.1:${otherGateway.port}`, otherProduct),
            };
          case 's1':
          case 's2':
          case 's3':
            return {
              id: `${id}@other`,
              title,
              processes: otherPids(
                id === 's1'
                  ? ['gateway', 'order']
                  : id === 's2'
                    ? ['gateway', 'user']
                    : ['gateway', 'order', 'user'],
              ),
              connections: id === 's3' ? options.orderConnections : options.connections,
              load: http(other.gatewayUrl, scenarioRequest(id, other)),
            };
          default:
            return undefined;
        }
      };
      // Each runtime's scenario right after this one's, so both see the same stretch of time.
      const interleaved = all.flatMap((scenario) => {
        const twin = onOther(scenario.id);
        return twin ? [scenario, twin] : [scenario];
      });
      all.splice(0, all.length, ...interleaved);
    }
    const traced = await Promise.all(startingTraced);
    if (sink) {
      const onTraced = (id: string): Scenario[] => {
        const base = all.find((scenario) => scenario.id === id);
        if (!base || (id !== 's1' && id !== 's2')) return [];
        return levels.map((level, index) => {
          const bench = traced[index]!;
          return {
            id: `${id}@${level.id}`,
            title: `${base.title} [${tracingLabel(level.ratio)}]`,
            group: `tracing ${id}`,
            processes: Object.fromEntries(
              (id === 's1' ? (['gateway', 'order'] as const) : (['gateway', 'user'] as const)).map(
                (app) => [`${app}@${level.id}`, bench.system.apps[app]!.pid!],
              ),
            ),
            connections: options.connections,
            load: http(bench.gatewayUrl, scenarioRequest(id, bench)),
          };
        });
      };
      // The same scenario on every system in a row, taking turns going first (`group`).
      const interleaved = all.flatMap((scenario) => {
        const twins = onTraced(scenario.id);
        return twins.length > 0
          ? [{ ...scenario, group: `tracing ${scenario.id}` }, ...twins]
          : [scenario];
      });
      all.splice(0, all.length, ...interleaved);
    }
    const selected = all.filter((scenario) =>
      options.scenarios.has(scenario.id.replace(/@.*$/, '')),
    );
    const scenarios = await measure(selected, options);
    orderClient.close();

    // E1 after the interleaved rounds: its figures are not ratios to a baseline, and a burst's
    // backlog must not slow the scenarios measured beside it.
    const events: EventsResult[] = [];
    const eventSystems = startingNats
      ? ([
          [bench, defaultTransport(bench)],
          [await startingNats, 'nats'],
        ] as const)
      : [];
    for (const [running, transport] of eventSystems) {
      events.push(
        ...(await measureEvents(running, transport, {
          durationSec: options.durationSec,
          connections: options.registrationConnections,
          burst: options.eventsBurst,
        })),
      );
    }
    const lost = events.reduce((sum, e) => sum + e.lost, 0);

    // autocannon abandons requests still in flight when its time is up; let them land first.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const mismatches = await stockMismatches(bench);
    for (const row of mismatches)
      log(
        `stock mismatch for ${row.id}: initial ${row.initial}, now ${row.stock}, in orders ${row.sold}`,
      );
    let oversold = mismatches.length;
    if (other) oversold += (await stockMismatches(other)).length;

    // Readiness: with the database up, how long each app takes from spawn to ready (tracing too).
    const readyMs: Record<string, number> = {};
    const timeRestarts = async (running: RunningSystem, suffix = '') => {
      for (const app of APPS) {
        const process = running.apps[app]!;
        await process.stop();
        const started = Date.now();
        await process.start();
        readyMs[`${app}${suffix}`] = Date.now() - started;
      }
    };
    await timeRestarts(system);
    // Start-up with tracing on: the apps of the system sampling the most.
    const most = levels.reduce((a, b) => ((b.ratio ?? -1) > (a.ratio ?? -1) ? b : a));
    const mostTraced = traced[levels.indexOf(most)];
    if (mostTraced) await timeRestarts(mostTraced.system, ` (${tracingLabel(most.ratio)})`);

    const report: Report = {
      date: new Date().toISOString(),
      machine: {
        cores: cpus().length,
        cpu: cpus()[0]?.model ?? 'unknown',
        node: process.version,
        memoryGb: Math.round(totalmem() / 2 ** 30),
      },
      options: {
        durationSec: options.durationSec,
        rounds: options.rounds,
        warmupSec: options.warmupSec,
        connections: options.connections,
        orderConnections: options.orderConnections,
        registrationConnections: options.registrationConnections,
        hashConcurrency: options.hashConcurrency,
        users: options.users,
        quick: options.quick,
      },
      scenarios,
      oversold,
      readyMs,
      ...(events.length > 0 ? { events } : {}),
      ...(otherVersion ? { compareNode: otherVersion } : {}),
      ...(sink
        ? {
            tracing: {
              levels: levels.flatMap(({ id, ratio }) =>
                ratio === undefined ? [] : [{ id, ratio }],
              ),
              control: levels.find(({ ratio }) => ratio === undefined)!.id,
              exported: sink.stats(),
            },
          }
        : {}),
    };
    const markdown = renderMarkdown(report);
    process.stdout.write(`\n${markdown}\n`);
    const out = join(__dirname, '..', 'results');
    mkdirSync(out, { recursive: true });
    const name = options.save;
    writeFileSync(join(out, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(out, `${name}.md`), markdown);
    log(`saved results/${name}.md and results/${name}.json`);

    if (options.check) {
      const failing = scenarios.filter((s) => s.errors > 0 || s.non2xx > 0);
      if (failing.length > 0 || oversold > 0 || lost > 0) {
        log(
          `CHECK FAILED: ${failing.map((s) => `${s.id} (${s.errors} errors, ${s.non2xx} non-2xx, ${s.shed} of them 503)`).join(', ')}${oversold ? `; ${oversold} products oversold` : ''}${lost ? `; ${lost} events lost` : ''}`,
        );
        return guard.exit(1);
      }
      log('check passed: no errors, no unexpected statuses, no oversell, no event lost');
    }
    return guard.exit(0);
  } catch (error) {
    if (!guard.signal.aborted) {
      process.stderr.write(
        `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    }
    return guard.exit(1);
  }
}

void main();
