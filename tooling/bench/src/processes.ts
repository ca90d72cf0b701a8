import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { WATCHDOG } from '@repo/system/system';

export interface Baseline {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts one of the baseline servers (dist/baselines/<name>.js) and waits for its READY line. Like
 * the apps, it holds a lifeline (see @repo/system's watchdog): it stops when the bench is gone.
 */
export async function startBaseline(
  name: string,
  env: Record<string, string>,
  nodePath = process.execPath,
): Promise<Baseline> {
  const child: ChildProcess = spawn(
    nodePath,
    ['--require', WATCHDOG, join(__dirname, 'baselines', `${name}.js`)],
    {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
      // A Ctrl-C reaches only the bench, which stops the baselines itself.
      detached: true,
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /^READY (\d+)$/.exec(line);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`baseline ${name} exited with ${code}`)));
  });
  return {
    pid: child.pid!,
    port,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
      }),
  };
}
