import type { Logger } from 'pino';

export interface DependencyMonitorOptions {
  /** Resolves when the dependency answers; rejects (or times out) when it does not. */
  check: () => Promise<void>;
  /** Called with the new state whenever it changes (and once at start). */
  onChange: (healthy: boolean) => void;
  intervalMs: number;
  /** A check slower than this counts as a failure. */
  timeoutMs: number;
  name: string;
  logger: Logger;
}

export interface DependencyMonitor {
  /** The last observed state. */
  readonly healthy: boolean;
  /** Runs one check now (used at start-up, and by tests). */
  checkNow(): Promise<boolean>;
  stop(): void;
}

/**
 * Polls a dependency (the service's database) and reports transitions, so gRPC health can say
 * NOT_SERVING while the database is unreachable and SERVING again as soon as it returns.
 */
export function monitorDependency(options: DependencyMonitorOptions): DependencyMonitor {
  let healthy: boolean | undefined;
  let running: Promise<boolean> | undefined;

  const runCheck = async (): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
    });
    let ok: boolean;
    let reason: unknown;
    try {
      await Promise.race([options.check(), timeout]);
      ok = true;
    } catch (error) {
      ok = false;
      reason = error;
    } finally {
      clearTimeout(timer);
    }
    if (ok !== healthy) {
      if (ok) options.logger.info({ dependency: options.name }, 'dependency is healthy');
      else
        options.logger.error({ dependency: options.name, err: reason }, 'dependency is unhealthy');
      healthy = ok;
      options.onChange(ok);
    }
    return ok;
  };

  const checkNow = () => {
    running ??= runCheck().finally(() => (running = undefined));
    return running;
  };

  const interval = setInterval(() => void checkNow(), options.intervalMs);
  interval.unref();

  return {
    get healthy() {
      return healthy ?? false;
    },
    checkNow,
    stop: () => clearInterval(interval),
  };
}
