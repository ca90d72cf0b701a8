#!/usr/bin/env node
// `pnpm run profile <app> [--scenario s1|s2|s3] [--duration 10] [--connections 50]`: runs one app under
// `node --cpu-prof` while a scenario loads the system, then prints the 15 functions with the most
// self time, so a person can see where the time goes. The .cpuprofile is kept for Chrome DevTools.
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { exitGuard } from '@repo/system/lifecycle';
import { APPS } from '@repo/system/system';
import { httpLoad, summarize } from './load';
import { ProcessSampler } from './procstats';
import { log, scenarioRequest, startBenchSystem } from './setup';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds on the monotonic clock, the one `process.hrtime` reads in every process here. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Now, in the profile's clock (µs). */
const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

function arg(flag: string, fallback: string): string {
  const index = process.argv.indexOf(flag);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

/**
 * Self time per function (summed over every node of the same function), heaviest first, as a share
 * of busy (non-idle) time. The profile spans the process's whole life (start-up, seeding, shutdown):
 * with `window`, only samples taken while the load ran count.
 */
export function topFunctions(
  profile: CpuProfile,
  count: number,
  window?: { fromMicros: number; toMicros: number },
): { name: string; location: string; ms: number; percent: number }[] {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, { name: string; location: string; ms: number }>();
  let total = 0;
  let at = profile.startTime;
  profile.samples.forEach((nodeId, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    at += micros;
    if (window && (at < window.fromMicros || at > window.toMicros)) return;
    const frame = byNode.get(nodeId)!.callFrame;
    if (frame.functionName === '(idle)') return;
    total += micros;
    const name = frame.functionName || '(anonymous)';
    const file = frame.url.replace(/^file:\/\//, '');
    const location = file
      ? `${relative(process.cwd(), file).replace(/^(\.\.\/)+/, '')}:${frame.lineNumber + 1}`
      : '';
    const key = `${name} ${location}`;
    const entry = self.get(key) ?? { name, location, ms: 0 };
    entry.ms += micros / 1000;
    self.set(key, entry);
  });
  return [...self.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, count)
    .map((entry) => ({
      ...entry,
      ms: Math.round(entry.ms),
      percent: Math.round((entry.ms / (total / 1000)) * 1000) / 10,
    }));
}

async function main(): Promise<void> {
  const app = process.argv[2];
  if (app === undefined || !APPS.includes(app)) {
    process.stderr.write(
      `usage: pnpm run profile <${APPS.join('|')}> [--scenario s1|s2|s3] [--duration 10] [--connections 50]\n`,
    );
    process.exit(2);
  }
  const scenario = arg('--scenario', app === 'user' ? 's2' : 's1') as 's1' | 's2' | 's3';
  const durationSec = Number(arg('--duration', '10'));
  const connections = Number(arg('--connections', scenario === 's3' ? '20' : '50'));
  const dir = join(__dirname, '..', 'results', 'profiles');
  mkdirSync(dir, { recursive: true });
  const before = new Set(readdirSync(dir));

  let window: { fromMicros: number; toMicros: number } | undefined;
  // Whatever ends the run (an error, Ctrl-C, SIGTERM, its parent going away) stops what it started.
  const guard = exitGuard({ log, signalExitCode: 1 });
  const starting = startBenchSystem({
    users: 50,
    nodeArgs: { [app]: ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
    signal: guard.signal,
  });
  guard.defer(async () => (await starting.catch(() => undefined))?.stop());
  const bench = await starting;
  try {
    log(`${scenario} for ${durationSec} s at ${connections} connections, profiling ${app}`);
    const sampler = new ProcessSampler({ [app]: bench.system.apps[app]!.pid! });
    sampler.start();
    window = { fromMicros: monotonicMicros(), toMicros: 0 };
    const result = summarize([
      await httpLoad({
        url: bench.gatewayUrl,
        connections,
        durationSec,
        next: scenarioRequest(scenario, bench),
      }),
    ]);
    window.toMicros = monotonicMicros();
    const { cpuPercent } = sampler.stop()[app]!;
    log(
      `${result.requestsPerSecond} req/s, p99 ${result.p99} ms, errors ${result.errors}, non-2xx ${result.non2xx}; ` +
        `${app} at ${cpuPercent}% of a core, ${result.requestsPerSecond > 0 ? Math.round((cpuPercent * 10_000) / result.requestsPerSecond) : '–'} µs of CPU per request (with the profiler on)`,
    );
  } finally {
    await bench.stop(); // the profiled app writes its profile as it exits
  }
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile') && !before.has(name));
  if (!file) throw new Error('no profile was written');
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  process.stdout.write(
    `\nTop 15 functions by self time in ${app} while the load ran (${join('tooling/bench/results/profiles', file)}):\n\n`,
  );
  process.stdout.write(
    '| # | self ms | % of busy time | function | where |\n| ---: | ---: | ---: | --- | --- |\n',
  );
  topFunctions(profile, 15, window).forEach((entry, index) => {
    process.stdout.write(
      `| ${index + 1} | ${entry.ms} | ${entry.percent} | ${entry.name} | ${entry.location} |\n`,
    );
  });
}

main().catch((error: unknown) => {
  process.stderr.write(
    `profile failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
