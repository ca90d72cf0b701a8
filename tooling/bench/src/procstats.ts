import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Resident memory now, in MB. */
export function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
}

/** Samples CPU and RSS of some processes over a window; reports CPU% of one core and peak RSS. */
export class ProcessSampler {
  private readonly startCpu = new Map<number, number>();
  private readonly peak = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private started = 0;

  constructor(private readonly pids: Record<string, number>) {}

  start(): void {
    this.started = Date.now();
    for (const pid of Object.values(this.pids)) {
      this.startCpu.set(pid, cpuSeconds(pid));
      this.peak.set(pid, rssMb(pid));
    }
    this.timer = setInterval(() => {
      for (const pid of Object.values(this.pids)) {
        try {
          this.peak.set(pid, Math.max(this.peak.get(pid) ?? 0, rssMb(pid)));
        } catch {
          // exited
        }
      }
    }, 200);
  }

  stop(): Record<string, { cpuPercent: number; peakRssMb: number }> {
    clearInterval(this.timer);
    const seconds = (Date.now() - this.started) / 1000;
    return Object.fromEntries(
      Object.entries(this.pids).map(([name, pid]) => {
        let cpu: number;
        try {
          cpu = cpuSeconds(pid) - (this.startCpu.get(pid) ?? 0);
        } catch {
          cpu = 0; // the process has exited
        }
        return [
          name,
          {
            cpuPercent: Math.round((cpu / seconds) * 100),
            peakRssMb: Math.round(this.peak.get(pid) ?? 0),
          },
        ];
      }),
    );
  }
}
