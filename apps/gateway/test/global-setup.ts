import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSystem, type RunningSystem } from '@repo/system/system';

declare global {
  var __gatewayTestSystem: { system: RunningSystem; dataDir: string } | undefined;
}

/** The services the gateway calls: its manifest's `calls` (user, order, any generated with routes). */
const CALLS = (
  JSON.parse(readFileSync(join(__dirname, '../package.json'), 'utf8')) as {
    service: { calls: string[] };
  }
).service.calls;

/**
 * Starts the real services the gateway calls (user, order, ...) as processes (the same way
 * `pnpm dev` does) on an embedded PostgreSQL, and tells the test files where they are through the environment.
 */
export default async function globalSetup(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gateway-test-'));
  // As root, PostgreSQL runs as an unprivileged user, which must be able to enter this directory.
  chmodSync(dataDir, 0o755);
  const system = await startSystem({
    dataDir,
    apps: CALLS,
    nodeEnv: 'production',
    logLevel: 'warn',
    // No test here is about shedding: on a busy machine, hashing must queue rather than be refused
    // because its expected wait passed production's 500 ms.
    env: { user: { HASH_QUEUE_WAIT_MAX_MS: '60000' } },
    // If Jest is killed before its teardown, PostgreSQL still stops and its data goes.
    ephemeral: true,
  });
  globalThis.__gatewayTestSystem = { system, dataDir };
  // TEST_USER_ADDR, TEST_ORDER_ADDR, ...
  for (const name of CALLS) {
    process.env[`TEST_${name.toUpperCase()}_ADDR`] = system.apps[name]!.address;
  }
  process.env.TEST_ORDER_ENV = JSON.stringify(system.envs.order);
}
