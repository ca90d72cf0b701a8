#!/usr/bin/env node
// `pnpm bench`: the whole system in production mode under load, next to baselines measured in the
// same run, so every figure is also a ratio that survives a noisy shared machine.
//
//   pnpm bench                       full run (10 s per scenario after a 3 s warm-up)
//   pnpm bench --quick               a few seconds per scenario (CI's smoke test)
//   pnpm bench --duration 20 --connections 100 --scenario s1,b1
//   pnpm bench --quick --check       exit 1 if any scenario had errors or unexpected statuses
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import { OrderServiceClient } from '@repo/contracts/order/v1';
import type { AppName } from '@repo/system/system';
import { callLoad, httpLoad, type HttpRequestSpec, type LoadResult } from './load';
import { startBaseline, type Baseline } from './processes';
import { ProcessSampler } from './procstats';
import { renderMarkdown, type Report, type ScenarioReport } from './report';
import { log, pick, scenarioRequest, startBenchSystem, stockMismatches } from './setup';

interface Options {
  durationSec: number;
  warmupSec: number;
  connections: number;
  orderConnections: number;
  scenarios: Set<string>;
  users: number;
  quick: boolean;
  check: boolean;
}

const ALL_SCENARIOS = ['b0', 'b1', 's1', 'b2', 's2', 's3'];

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
  return {
    durationSec: number('--duration', quick ? 3 : 10),
    warmupSec: number('--warmup', quick ? 1 : 3),
    connections: number('--connections', 50),
    orderConnections: number('--order-connections', 20),
    scenarios: new Set(scenarios),
    users: number('--users', quick ? 20 : 1000),
    quick,
    check: argv.includes('--check'),
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const bench = await startBenchSystem({ users: options.users });
  const { system } = bench;
  const baselines: Baseline[] = [];
  try {
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

    const pids = (apps: AppName[]) =>
      Object.fromEntries(apps.map((app) => [app, system.apps[app]!.pid!]));
    const scenarios: ScenarioReport[] = [];
    const run = async (
      id: string,
      title: string,
      processes: Record<string, number>,
      connections: number,
      load: (durationSec: number, connections: number) => Promise<LoadResult>,
    ) => {
      if (!options.scenarios.has(id)) return;
      log(
        `${id}: ${title} — warm-up ${options.warmupSec} s, then ${options.durationSec} s at ${connections} connections`,
      );
      await load(options.warmupSec, connections);
      const sampler = new ProcessSampler(processes);
      sampler.start();
      const result = await load(options.durationSec, connections);
      const resources = sampler.stop();
      scenarios.push({ id, title, connections, ...result, processes: resources });
      log(
        `${id}: ${result.requestsPerSecond} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms, errors ${result.errors}, non-2xx ${result.non2xx}`,
      );
    };
    const http =
      (url: string, next: () => HttpRequestSpec) => (durationSec: number, connections: number) =>
        httpLoad({ url, connections, durationSec, next });
    const productById = (): HttpRequestSpec => ({
      method: 'GET',
      path: `/v1/products/${pick(productIds)}`,
    });

    await run(
      'b0',
      'B0 raw node:http, same JSON',
      { b0: b0.pid },
      options.connections,
      http(`http://127.0.0.1:${b0.port}`, productById),
    );
    await run(
      'b1',
      'B1 naive Express -> grpc-js -> pg',
      { 'b1-http': naiveGateway.pid, 'b1-grpc': naiveBackend.pid },
      options.connections,
      http(`http://127.0.0.1:${naiveGateway.port}`, productById),
    );
    await run(
      's1',
      'S1 GET /v1/products/:id',
      pids(['gateway', 'order']),
      options.connections,
      http(gateway, scenarioRequest('s1', bench)),
    );

    const orderClient = new OrderServiceClient(
      system.apps.order!.address,
      credentials.createInsecure(),
    );
    await run(
      'b2',
      'B2 gRPC GetProduct, no gateway',
      pids(['order']),
      options.connections,
      (durationSec, concurrency) =>
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
    );
    orderClient.close();

    await run(
      's2',
      'S2 GET /v1/users/me (JWT)',
      pids(['gateway', 'user']),
      options.connections,
      http(gateway, scenarioRequest('s2', bench)),
    );
    await run(
      's3',
      'S3 POST /v1/orders (1-3 lines)',
      pids(['gateway', 'order', 'user']),
      options.orderConnections,
      http(gateway, scenarioRequest('s3', bench)),
    );

    // autocannon abandons requests still in flight when its time is up; let them land first.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const mismatches = await stockMismatches(bench);
    for (const row of mismatches)
      log(
        `stock mismatch for ${row.id}: initial ${row.initial}, now ${row.stock}, in orders ${row.sold}`,
      );
    const oversold = mismatches.length;

    // Readiness: with the database up, how long each app takes from spawn to ready.
    const readyMs: Record<string, number> = {};
    for (const app of ['user', 'order', 'gateway'] as const) {
      const process = system.apps[app]!;
      await process.stop();
      const started = Date.now();
      await process.start();
      readyMs[app] = Date.now() - started;
    }

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
        warmupSec: options.warmupSec,
        connections: options.connections,
        orderConnections: options.orderConnections,
        users: options.users,
        quick: options.quick,
      },
      scenarios,
      oversold,
      readyMs,
    };
    const markdown = renderMarkdown(report);
    process.stdout.write(`\n${markdown}\n`);
    const out = join(__dirname, '..', 'results');
    mkdirSync(out, { recursive: true });
    const name = options.quick ? 'quick' : 'latest';
    writeFileSync(join(out, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(out, `${name}.md`), markdown);
    log(`saved results/${name}.md and results/${name}.json`);

    if (options.check) {
      const failing = scenarios.filter((s) => s.errors > 0 || s.non2xx > 0);
      if (failing.length > 0 || oversold > 0) {
        log(
          `CHECK FAILED: ${failing.map((s) => `${s.id} (${s.errors} errors, ${s.non2xx} non-2xx)`).join(', ')}${oversold ? `; ${oversold} products oversold` : ''}`,
        );
        process.exitCode = 1;
      } else {
        log('check passed: no errors, no unexpected statuses, no oversell');
      }
    }
  } finally {
    for (const baseline of baselines) await baseline.stop();
    await bench.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
