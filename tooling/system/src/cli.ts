#!/usr/bin/env node
// `pnpm dev`: the whole system on this machine, no Docker. One embedded PostgreSQL (data in
// .data/ at the repository root, reused by the next start), a database per service, then user,
// order and gateway with their logs prefixed by app name. Ctrl-C stops everything in order.
import { join } from 'node:path';
import { APPS, DEFAULT_PORTS, ROOT, SystemError, startSystem, type AppName } from './system';

const COLOURS: Record<string, string> = {
  user: '36',
  order: '35',
  gateway: '33',
  postgres: '90',
  system: '32',
};
const width = Math.max(...[...APPS, 'postgres', 'system'].map((name) => name.length));
const colour = process.stdout.isTTY;

function print(source: string, line: string): void {
  const label = source.padEnd(width);
  const prefix = colour ? `\x1b[${COLOURS[source] ?? '0'}m${label} |\x1b[0m` : `${label} |`;
  process.stdout.write(`${prefix} ${line}\n`);
}

/** Ports from the environment, defaulting to the well-known ones. */
function port(app: AppName, variable: string): number {
  const value = process.env[variable];
  if (value === undefined || value === '') return DEFAULT_PORTS[app];
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1 || parsed > 65535) {
    throw new SystemError(`${variable} must be a port number (got ${JSON.stringify(value)})`);
  }
  return parsed;
}

async function main(): Promise<void> {
  const started = Date.now();
  const logLevel = process.env.LOG_LEVEL ?? 'info';
  const showPostgres = logLevel === 'debug' || logLevel === 'trace';
  const system = await startSystem({
    dataDir: process.env.DATA_DIR ?? join(ROOT, '.data'),
    databaseUrl: process.env.DATABASE_URL || undefined,
    ports: {
      user: port('user', 'USER_GRPC_PORT'),
      order: port('order', 'ORDER_GRPC_PORT'),
      gateway: port('gateway', 'GATEWAY_PORT'),
    },
    nodeEnv: process.env.NODE_ENV === 'production' ? 'production' : 'development',
    logLevel,
    onLog: (source, line) => {
      if (source !== 'postgres' || showPostgres) print(source, line);
    },
  });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    print('system', `${signal}: stopping gateway, order, user, then PostgreSQL`);
    system.stop().then(
      () => {
        print('system', 'stopped');
        process.exit(0);
      },
      (error: unknown) => {
        print('system', `stop failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  // If an app dies on its own, say so and stop the rest: a half-running system misleads.
  for (const app of Object.values(system.apps)) {
    void app.exited().then((code) => {
      if (!stopping) {
        print('system', `${app.name} exited unexpectedly (code ${code}); stopping everything`);
        shutdown('exit');
      }
    });
  }

  const url = system.gatewayUrl!;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  print('system', `ready in ${seconds} s`);
  print('system', `  API      ${url}/v1/products`);
  print('system', `  docs     ${url}/docs`);
  print('system', `  metrics  ${url}/metrics`);
  print('system', `  health   ${url}/readyz`);
  print('system', 'Ctrl-C stops everything.');
}

main().catch((error: unknown) => {
  if (error instanceof SystemError) print('system', `error: ${error.message}`);
  else
    print(
      'system',
      `error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  process.exit(1);
});
