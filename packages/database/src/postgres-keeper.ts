// The process between startEmbeddedPostgres (embedded.ts) and the PostgreSQL server it runs.
//
// PostgreSQL does not notice when the process that started it dies: a runner, bench or test run
// killed outright (SIGKILL, a crash, a closed terminal) used to leave its server running with parent
// PID 1. The keeper starts the server and holds the read end of a pipe whose write end only the
// starting process holds (its stdin). However that process ends, even by SIGKILL, the pipe closes
// and the keeper asks the server for a fast shutdown (in-flight transactions roll back, nothing
// half-written), waits for it, optionally removes a throwaway data directory, and exits.
//
// The keeper runs in a session of its own, so a Ctrl-C in a terminal reaches the runner, which stops
// the apps first and the database last, instead of reaching PostgreSQL directly.
//
// Usage (by embedded.ts only): node postgres-keeper.js '<KeeperConfig as JSON>'
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';

export interface KeeperConfig {
  /** The postgres binary and its arguments. */
  postgres: string;
  args: string[];
  /** Set when running as root: PostgreSQL refuses to run as root. */
  uid?: number;
  gid?: number;
  env: Record<string, string>;
  /** A directory to remove once the server has exited (a test's throwaway cluster). */
  removeOnExit?: string;
}

function main(): void {
  // Once the starter is gone, writing to its pipes fails (EPIPE): never let that stop the keeper.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const config = JSON.parse(process.argv[2] ?? '') as KeeperConfig;
  const server = spawn(config.postgres, config.args, {
    // The starting process's working directory may be one the unprivileged user cannot enter.
    cwd: '/',
    env: { ...process.env, ...config.env },
    stdio: ['ignore', 'inherit', 'inherit'],
    ...(config.uid === undefined ? {} : { uid: config.uid, gid: config.gid }),
  });

  let exiting = false;
  const finish = (code: number) => {
    if (exiting) return;
    exiting = true;
    if (config.removeOnExit) rmSync(config.removeOnExit, { recursive: true, force: true });
    process.exit(code);
  };
  server.on('exit', (code, signal) => finish(code ?? (signal ? 1 : 0)));
  server.on('error', (error) => {
    process.stderr.write(`postgres-keeper: cannot run ${config.postgres}: ${error.message}\n`);
    finish(1);
  });

  // First request: fast shutdown. A second one (the starter gave up waiting): immediate shutdown.
  let requests = 0;
  const stop = () => {
    requests += 1;
    if (server.exitCode === null && server.signalCode === null) {
      server.kill(requests === 1 ? 'SIGINT' : 'SIGQUIT');
    }
  };
  process.stdin.on('end', stop).on('error', stop).resume();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, stop);
  process.on('uncaughtException', (error) => {
    process.stderr.write(`postgres-keeper: ${String(error)}\n`);
    stop();
  });
}

main();
