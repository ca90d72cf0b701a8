import { APPS, MAX_REPLICAS, SystemError, type AppName } from './system';

/**
 * Reads how many replicas of which apps to run, `user=2,order=2,gateway=2` (apps left out run
 * once), as `--replicas` or REPLICAS give it. Strict: anything else is a SystemError of one line
 * saying what is wrong, `source` naming where it came from.
 */
export function parseReplicas(
  text: string,
  source = '--replicas',
): Partial<Record<AppName, number>> {
  const counts: Partial<Record<AppName, number>> = {};
  const usage = `${source} takes app=count pairs separated by commas, e.g. user=2,order=2,gateway=2`;
  if (text.trim() === '') throw new SystemError(`${usage} (got nothing)`);
  for (const pair of text.split(',')) {
    const match = /^\s*([^=\s]*)\s*=\s*(\S*)\s*$/.exec(pair);
    if (!match) throw new SystemError(`${usage} (got ${JSON.stringify(pair)})`);
    const [, name, count] = match as unknown as [string, string, string];
    const app = APPS.find((candidate) => candidate === name);
    if (!app) {
      throw new SystemError(
        `${source}: no app is called ${JSON.stringify(name)} (the apps are ${APPS.join(', ')})`,
      );
    }
    if (counts[app] !== undefined) throw new SystemError(`${source}: ${app} is given twice`);
    const value = /^\d+$/.test(count) ? Number(count) : Number.NaN;
    if (!(value >= 1 && value <= MAX_REPLICAS)) {
      throw new SystemError(
        `${source}: ${app}=${count} is not a whole number from 1 to ${MAX_REPLICAS}`,
      );
    }
    counts[app] = value;
  }
  return counts;
}

/**
 * The replicas the command line asks for: `--replicas <pairs>` or `--replicas=<pairs>`, else the
 * REPLICAS variable (how `pnpm dev` takes it without `--`: turbo passes it through), else none.
 */
export function replicasFromCommandLine(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): Partial<Record<AppName, number>> {
  const at = argv.findIndex((arg) => arg === '--replicas' || arg.startsWith('--replicas='));
  if (at !== -1) {
    const arg = argv[at]!;
    const value = arg === '--replicas' ? argv[at + 1] : arg.slice('--replicas='.length);
    if (value === undefined || value.startsWith('--')) {
      throw new SystemError('--replicas needs a value, e.g. --replicas user=2,order=2,gateway=2');
    }
    return parseReplicas(value);
  }
  return env.REPLICAS ? parseReplicas(env.REPLICAS, 'REPLICAS') : {};
}
