import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { WATCHDOG, appEntry } from '@repo/system/system';
import { SECRET } from './harness';

/** The services the global setup started, as gateway settings (TEST_USER_ADDR -> USER_SERVICE_ADDR). */
function serviceAddresses(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env)
      .filter(([name, value]) => /^TEST_[A-Z0-9]+_ADDR$/.test(name) && value)
      .map(([name, value]) => [name.replace(/^TEST_(\w+)_ADDR$/, '$1_SERVICE_ADDR'), value!]),
  );
}

/**
 * The built gateway (`node apps/gateway/dist/main.js`) as a real process in front of the test run's
 * user and order services, configured only by `env`, its JSON log lines kept. It holds a pipe from
 * this process (the runner's watchdog), so it stops by itself if Jest dies.
 */
export class GatewayProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {
    const record = (line: string) => {
      this.lines.push(line);
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.pattern.test(line)) return true;
        waiter.resolve(line);
        return false;
      });
    };
    createInterface({ input: child.stdout! }).on('line', record);
    createInterface({ input: child.stderr! }).on('line', record);
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Spawns a gateway on `port` (its own settings in `env`); does not wait for it. */
  static spawn(port: number, env: Record<string, string> = {}): GatewayProcess {
    const child = spawn(process.execPath, ['--require', WATCHDOG, appEntry('gateway')], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        LOG_LEVEL: 'info',
        JWT_SECRET: SECRET,
        DRAIN_DELAY_MS: '0',
        GATEWAY_HOST: '127.0.0.1',
        GATEWAY_PORT: String(port),
        ...serviceAddresses(),
        ...env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new GatewayProcess(child, port);
  }

  /** Spawns a gateway and waits until it listens and /readyz answers 200. */
  static async start(port: number, env: Record<string, string> = {}): Promise<GatewayProcess> {
    const gateway = GatewayProcess.spawn(port, env);
    try {
      await gateway.waitFor(/gateway listening/);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ready = await fetch(`${gateway.url}/readyz`).catch(() => undefined);
        if (ready?.status === 200) break;
        if (Date.now() > deadline) throw new Error(`/readyz is not 200:\n${gateway.tail()}`);
        await sleep(50);
      }
    } catch (error) {
      await gateway.stop();
      throw error;
    }
    return gateway;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The first log line matching `pattern`, printed already or to come; rejects if it exits first. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const found = this.lines.find((line) => pattern.test(line));
    if (found) return found;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<string>((resolve) => this.waiters.push({ pattern, resolve })),
        this.exited.then((code) => {
          throw new Error(
            `the gateway exited (${code}) before logging ${pattern}:\n${this.tail()}`,
          );
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(`the gateway logged no ${pattern} in ${timeoutMs} ms:\n${this.tail()}`),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The JSON log records (pino) printed so far. */
  records(): Record<string, unknown>[] {
    return this.lines.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  tail(count = 15): string {
    return this.lines.slice(-count).join('\n');
  }

  /** SIGTERM (graceful), SIGKILL if it has not gone 20 s later; the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** The value of an unlabelled counter in a gateway's /metrics. */
export async function counterValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `));
  if (!line) throw new Error(`${name} is not in ${url}/metrics`);
  return Number(line.slice(name.length + 1));
}
