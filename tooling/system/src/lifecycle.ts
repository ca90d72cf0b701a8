// Every way a command that starts processes (`pnpm dev`, `pnpm bench`, `pnpm run profile`) can end
// runs the same clean-up: a signal (SIGINT, SIGTERM, SIGHUP), an uncaught exception or unhandled
// rejection, its parent process going away, or its output no longer being read (EPIPE). What no
// handler can catch (SIGKILL) is covered by the lifelines: each app stops itself when the runner's
// end of its stdin closes (watchdog.ts), and so does PostgreSQL's keeper
// (@repo/database/embedded).

export interface ExitGuard {
  /** Aborted as soon as the command must stop, so a start-up in progress can give up. */
  readonly signal: AbortSignal;
  /** Registers a clean-up; they run once, the last registered first, before the process exits. */
  defer(cleanup: () => Promise<void> | void): void;
  /** Runs the clean-ups, then exits with `code`. */
  exit(code: number): Promise<never>;
}

export interface ExitGuardOptions {
  /** Where to say why the command is stopping. */
  log: (line: string) => void;
  /** Exit code after a stop asked for by a signal (default 0: Ctrl-C is how `pnpm dev` ends). */
  signalExitCode?: number;
  /** The clean-up's time limit; after it the process exits 1 anyway (default 60 s). */
  timeoutMs?: number;
  /** How often to check that the parent process is still there (default 1 s). */
  parentCheckMs?: number;
}

export function exitGuard(options: ExitGuardOptions): ExitGuard {
  const controller = new AbortController();
  const cleanups: (() => Promise<void> | void)[] = [];
  let exiting: Promise<never> | undefined;

  const exit = (code: number): Promise<never> => {
    exiting ??= (async () => {
      controller.abort();
      clearInterval(parentCheck);
      const timer = setTimeout(() => {
        options.log(`clean-up still running after ${options.timeoutMs ?? 60_000} ms; exiting`);
        process.exit(1);
      }, options.timeoutMs ?? 60_000);
      let failed = false;
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (error) {
          failed = true;
          options.log(`clean-up failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      clearTimeout(timer);
      process.exit(failed && code === 0 ? 1 : code);
    })();
    return exiting;
  };

  const stop = (reason: string, code: number) => {
    if (exiting) return;
    options.log(`${reason}: stopping everything this command started`);
    void exit(code);
  };

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Repeated signals change nothing: a Ctrl-C under turbo arrives twice (from the terminal and
    // forwarded by turbo), and cutting the clean-up short would leave the apps to their lifelines.
    // The clean-up's time limit still bounds how long stopping takes.
    process.on(signal, () => stop(signal, options.signalExitCode ?? 0));
  }
  process.on('uncaughtException', (error) => {
    options.log(`uncaught exception: ${error.stack ?? error.message}`);
    stop('uncaught exception', 1);
  });
  process.on('unhandledRejection', (reason) => {
    options.log(
      `unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`,
    );
    stop('unhandled rejection', 1);
  });
  // Nobody reads our output any more (the terminal or turbo that started us is gone).
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => stop('output closed', 1));
  }
  const parent = process.ppid;
  const parentCheck = setInterval(() => {
    if (process.ppid !== parent) stop(`parent process ${parent} exited`, 1);
  }, options.parentCheckMs ?? 1_000);
  parentCheck.unref();

  return {
    signal: controller.signal,
    defer: (cleanup) => void cleanups.push(cleanup),
    exit,
  };
}
