/** Helpers for tests of services built with the kit. */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { spawn } from 'node:child_process';

/**
 * Re-evaluates `probe` until it returns `expected` (deep-equal by JSON) or `timeoutMs` passes;
 * resolves with the last value either way, so the assertion that follows reports what was seen.
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  expected: T,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    try {
      last = await probe();
      if (JSON.stringify(last) === JSON.stringify(expected)) return last;
    } catch (error) {
      last = error as T;
    }
    if (Date.now() > deadline) return last;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejectionOf<E = Error>(promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (error) {
    return error as E;
  }
  throw new Error('expected the call to fail, and it succeeded');
}

/**
 * Runs `promtool check metrics` (from Debian's `prometheus` package) on a Prometheus text
 * exposition; resolves with what it complains about, '' when nothing. Throws, never skips, when
 * promtool is not installed.
 */
export async function checkMetricsWithPromtool(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new Error(
              'promtool is not installed: it comes with Debian\'s "prometheus" package ' +
                '(apt-get install -y prometheus; .ci/run installs it when missing)',
            )
          : error,
      ),
    );
    child.on('close', (code) =>
      code === 0 || output ? resolve(output.trim()) : reject(new Error(`promtool exited ${code}`)),
    );
    child.stdin.end(text);
  });
}

/**
 * A TCP proxy in front of a real server (Redis, PostgreSQL), which a test can make fail the ways a
 * network or a server fails: `hang()` keeps every connection open and accepts new ones, but nothing
 * gets through (a server that stopped answering); `stop()` closes every connection and the port (a
 * server that is down, or cut off: connections refused); `start()` again on the same port brings it
 * back. `down()` and `up()` do what `stop()` and `start()` do, but keep the port listening (new
 * connections are reset at once): prefer them for an outage in the middle of a test. A stopped
 * proxy's port is free for anyone to take meanwhile; and were it in the ephemeral range, a client
 * reconnecting to it could be given that very port as its own and connect to itself (TCP
 * simultaneous open), then wait for ever for an answer from itself. `freePort()` gives ports below
 * that range for this reason too.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private hanging = false;
  private isDown = false;

  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** `127.0.0.1:<port>`: where clients connect instead of the real server. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.hanging = false;
    this.isDown = false;
    const server = createServer((client) => {
      if (this.isDown) {
        client.destroy();
        return;
      }
      const upstream = createConnection(this.target);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(from);
        from.on('data', (data) => {
          if (!this.hanging) to.write(data);
        });
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
        from.on('error', () => to.destroy());
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  hang(): void {
    this.hanging = true;
  }

  /** Cut off, keeping the port: every connection is dropped, new ones are reset at once. */
  down(): void {
    this.isDown = true;
    for (const socket of this.sockets) socket.destroy();
  }

  /** Back after `down()`. */
  up(): void {
    this.isDown = false;
    this.hanging = false;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
