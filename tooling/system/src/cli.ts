#!/usr/bin/env node
// `pnpm dev` and `pnpm start`: the whole system on this machine, no Docker. One embedded
// PostgreSQL (data in .data/ at the repository root, reused by the next start), a database per
// app that has one, then the apps of the manifest (apps/*/package.json's `service`: see
// manifest.ts) in dependency order, with their logs prefixed by app name. Ctrl-C stops
// everything in order. `--replicas user=2,order=2,gateway=2` (or REPLICAS=...) runs more than one
// process of an app: see replicas.ts and registry.ts.
//
// With --watch (`pnpm dev`), a saved source file rebuilds what it affects and restarts only the
// apps concerned (see watch.ts); without it (`pnpm start`: CI, demos, the bench) nothing is watched.
//
// Every variable in an app's .env.example reaches that app (turbo passes them through: see
// tooling/system/turbo.json); the runner sets only the wiring it owns (see startSystem).
import { resolve } from 'node:path';
import { exitGuard } from './lifecycle';
import { replicasFromCommandLine } from './replicas';
import {
  APPS,
  DEFAULT_PORTS,
  GATEWAY_APP,
  PORT_VARIABLE,
  ROOT,
  SystemError,
  startSystem,
  type AppName,
  type AppProcess,
} from './system';

/** The apps' colours, in start order (cyan, magenta, yellow for user, order, gateway), then more. */
const PALETTE = ['36', '35', '33', '34', '31', '96', '95', '93', '94', '91'];
const COLOURS: Record<string, string> = {
  ...Object.fromEntries(APPS.map((app, index) => [app, PALETTE[index % PALETTE.length]!])),
  postgres: '90',
  system: '32',
};
/** Room for `gateway#2` (a longer label, after many restarts in watch mode, just sticks out). */
const width = Math.max('postgres'.length, ...APPS.map((app) => `${app}#2`.length));
const colour = process.stdout.isTTY;

function print(source: string, line: string): void {
  const label = source.padEnd(width);
  // Every replica of an app in the app's colour: `order#3` as `order`.
  const code = COLOURS[source.replace(/#\d+$/, '')] ?? '0';
  const prefix = colour ? `\x1b[${code}m${label} |\x1b[0m` : `${label} |`;
  process.stdout.write(`${prefix} ${line}\n`);
}

/** Ports from the environment, defaulting to the well-known ones; 0 picks a free port. */
function port(app: AppName, variable: string): number {
  const value = process.env[variable];
  if (value === undefined || value === '') return DEFAULT_PORTS[app]!;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) {
    throw new SystemError(`${variable} must be a port number (got ${JSON.stringify(value)})`);
  }
  return parsed;
}

const SLOW_MS = { TRACE_SLOW_MS: '200' };
const devTracing = Object.fromEntries(APPS.map((app) => [app, SLOW_MS]));

async function main(): Promise<void> {
  const started = Date.now();
  const watchMode = process.argv.includes('--watch');
  const replicas = replicasFromCommandLine(process.argv.slice(2), process.env);
  const guard = exitGuard({ log: (line) => print('system', line) });
  const logLevel = process.env.LOG_LEVEL ?? 'info';
  const showPostgres = logLevel === 'debug' || logLevel === 'trace';
  const gateway = GATEWAY_APP;
  if (gateway && (replicas[gateway] ?? 1) > 1 && !process.env.REDIS_URL) {
    print(
      'system',
      'warning: REDIS_URL is not set, so each gateway replica counts rate limits on its own (a client gets RATE_LIMIT_MAX per replica)',
    );
  }

  // If an app dies on its own, say so and stop the rest: a half-running system misleads. In watch
  // mode the fix is usually the next save, which starts it again: keep the rest running meanwhile.
  // Every run of every replica is watched, from the moment it is ready.
  const supervise = (app: AppProcess) => {
    void app.crashed().then((code) => {
      if (guard.signal.aborted) return;
      if (watchMode) {
        print('system', `${app.label} exited (code ${code}); a save that affects it restarts it`);
      } else {
        print('system', `${app.label} exited unexpectedly (code ${code}); stopping everything`);
        void guard.exit(1);
      }
    });
  };

  const starting = startSystem({
    // A relative DATA_DIR is relative to the repository root, wherever pnpm was run from.
    dataDir: resolve(ROOT, process.env.DATA_DIR || '.data'),
    databaseUrl: process.env.DATABASE_URL || undefined,
    ports: Object.fromEntries(APPS.map((app) => [app, port(app, PORT_VARIABLE[app]!)])),
    replicas,
    nodeEnv: process.env.NODE_ENV === 'production' ? 'production' : 'development',
    logLevel,
    // Under `pnpm dev`, each app logs the span breakdown of every request slower than 200 ms
    // (TRACE_SLOW_MS; `TRACE_SLOW_MS=` turns it off): where the time went, without a collector.
    env: watchMode && process.env.TRACE_SLOW_MS === undefined ? devTracing : undefined,
    onLog: (source, line) => {
      if (source !== 'postgres' || showPostgres) print(source, line);
    },
    signal: guard.signal,
    onReady: supervise,
  });
  // Stops the apps in reverse order, then PostgreSQL; a start still in progress stops itself.
  guard.defer(async () => {
    const system = await starting.catch(() => undefined);
    if (!system) return;
    print('system', `stopping ${[...APPS].reverse().join(', ')}, then PostgreSQL`);
    await system.stop();
    print('system', 'stopped');
  });
  const system = await starting.catch(async (error: unknown) => {
    if (guard.signal.aborted) return guard.exit(0); // stopped during start-up, as asked
    if (error instanceof SystemError) print('system', `error: ${error.message}`);
    else
      print(
        'system',
        `error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
    return guard.exit(1);
  });

  const url = system.gatewayUrl!;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  print('system', `ready in ${seconds} s`);
  print('system', `  API       ${url}/v1/products`);
  print('system', `  docs      ${url}/docs`);
  // The gateway's first, then the services' in start order.
  for (const app of [...APPS].sort((a, b) => Number(b === gateway) - Number(a === gateway))) {
    for (const replica of system.replicas[app] ?? []) {
      print('system', `  metrics   ${replica.metricsUrl} (${replica.label})`);
    }
  }
  print('system', `  health    ${url}/readyz`);
  print('system', `  discovery ${system.discovery.dir} (the ready replicas of each service)`);
  print('system', 'Ctrl-C stops everything.');

  if (watchMode) {
    // Loaded only in watch mode: it brings the TypeScript compiler.
    const { watchSystem } = await import('./watch.js');
    const watcher = watchSystem({ root: ROOT, system, onLog: print });
    // Registered last, so it runs first: no rebuild or restart is under way while the apps stop.
    guard.defer(() => watcher.close());
  }
}

main().catch((error: unknown) => {
  // Only what fails before anything started lands here (a bad port variable or --replicas).
  print('system', `error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
