import type { Logger } from 'pino';

export interface ShutdownOptions {
  logger: Logger;
  /** After this long the process exits 1 even if cleanup has not finished. */
  timeoutMs: number;
  signals?: NodeJS.Signals[];
}

/**
 * Runs `cleanup` once on the first SIGTERM or SIGINT, then exits 0 (1 if cleanup failed or took
 * longer than `timeoutMs`). A second signal while cleaning up exits at once.
 */
export function onShutdownSignal(
  cleanup: (signal: NodeJS.Signals) => Promise<void>,
  options: ShutdownOptions,
): void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  let shuttingDown = false;
  const handle = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      options.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    options.logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      options.logger.error({ timeoutMs: options.timeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, options.timeoutMs);
    timer.unref();
    cleanup(signal).then(
      () => {
        options.logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        options.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, handle);
}
