import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { processTree, stillRunning, type ProcessInfo } from '@repo/database/testing';

/**
 * A command started as a real process, with its output kept, and every process it ever had below
 * it recorded (polled from /proc), so a test can prove that all of them are gone afterwards and
 * touch nothing it did not start.
 */
export class Watched {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly outputEnded: Promise<void>;
  private readonly seen = new Map<string, ProcessInfo>();
  private readonly poll: NodeJS.Timeout;
  private waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];

  constructor(command: string, args: string[], options: SpawnOptions = {}) {
    this.child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const record = (line: string) => {
      this.lines.push(line);
      if (process.env.E2E_VERBOSE) process.stdout.write(`${line}\n`);
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.pattern.test(line)) return true;
        waiter.resolve(line);
        return false;
      });
    };
    const out = createInterface({ input: this.child.stdout! }).on('line', record);
    const err = createInterface({ input: this.child.stderr! }).on('line', record);
    // The output ends when every process holding it has gone, which may be after the command.
    this.outputEnded = Promise.all(
      [out, err].map((lines) => new Promise((resolve) => lines.once('close', resolve))),
    ).then(() => undefined);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    this.poll = setInterval(() => this.record(), 100);
    void this.exited.then(() => clearInterval(this.poll));
  }

  private record(): void {
    if (this.child.pid === undefined) return;
    for (const info of processTree(this.child.pid)) {
      this.seen.set(`${info.pid}/${info.startTime}`, info);
    }
  }

  /** Every process seen below (and including) the command, now or earlier. */
  get processes(): ProcessInfo[] {
    this.record();
    return [...this.seen.values()];
  }

  /** The first output line matching `pattern` (already printed or still to come). */
  async waitFor(pattern: RegExp, timeoutMs = 90_000): Promise<string> {
    const found = this.lines.find((line) => pattern.test(line));
    if (found) return found;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<string>((resolve) => this.waiters.push({ pattern, resolve })),
        this.outputEnded.then(() => {
          throw new Error(
            `the output ended before ${pattern} was printed:\n${this.lines.slice(-20).join('\n')}`,
          );
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(
                  `nothing matched ${pattern} in ${timeoutMs} ms:\n${this.lines.slice(-20).join('\n')}`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves once none of the processes ever seen is running; rejects naming the survivors. */
  async allGone(timeoutMs = 60_000): Promise<void> {
    const known = this.processes;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = stillRunning(known);
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(
          `still running ${timeoutMs} ms later:\n${left.map((p) => `  ${p.pid} ${p.command}`).join('\n')}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Last resort for a failed test: SIGKILL whatever is still running of what it started. */
  killAll(): void {
    for (const info of stillRunning(this.processes)) {
      try {
        process.kill(info.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

/** The `-D <dir>` of the PostgreSQL among `processes`, if one was seen. */
export function postgresDataDir(processes: readonly ProcessInfo[]): string | undefined {
  for (const { command } of processes) {
    const match = /\/postgres -D (\S+)/.exec(command);
    if (match) return match[1];
  }
  return undefined;
}
