/** Helpers for tests of services built with the kit. */
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
