import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { dropDatabase, ensureDatabase, withDatabase } from './admin';

/** Set by the Jest global setup: a migrated database that test databases are copied from. */
export const TEMPLATE_URL_ENV = 'TEST_DATABASE_TEMPLATE_URL';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh, fully migrated database for one test file, copied from the template the Jest global
 * setup migrated (CREATE DATABASE ... TEMPLATE takes milliseconds; running migrations per file
 * would take seconds).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const templateUrl = process.env[TEMPLATE_URL_ENV];
  if (!templateUrl) {
    throw new Error(
      `${TEMPLATE_URL_ENV} is not set: add @repo/database/jest-global-setup to this package's jest config`,
    );
  }
  const template = new URL(templateUrl).pathname.slice(1);
  const name = `test_${randomBytes(6).toString('hex')}`;
  await ensureDatabase(templateUrl, name, template);
  return {
    url: withDatabase(templateUrl, name),
    drop: () => dropDatabase(templateUrl, name),
  };
}

export interface TcpProxy {
  /** The database URL, rewritten to go through the proxy. */
  url: string;
  /** Cuts every open connection and refuses new ones: the database "goes away". */
  block(): void;
  /** Accepts connections again: the database "comes back". */
  unblock(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a real PostgreSQL, for tests of what a service does while its database
 * is unreachable (health turning NOT_SERVING, then SERVING again).
 */
export async function startTcpProxy(databaseUrl: string): Promise<TcpProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let blocked = false;
  const server = createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const proxied = new URL(databaseUrl);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(port);
  return {
    url: proxied.toString(),
    block() {
      blocked = true;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    unblock() {
      blocked = false;
    },
    close() {
      blocked = true;
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Processes (pid and command line) whose command line contains `needle`: a data directory, a
 * port argument, a temporary directory. Tests use it to prove that whatever they started has gone,
 * without touching processes they did not start (Linux: reads /proc).
 */
export function processesMatching(needle: string): { pid: number; command: string }[] {
  const found: { pid: number; command: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let command: string;
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    if (command.includes(needle)) found.push({ pid, command });
  }
  return found;
}

export interface ProcessInfo {
  pid: number;
  /** Start time in clock ticks since boot: tells a process from a later one given the same pid. */
  startTime: number;
  command: string;
}

function processInfo(pid: number): (ProcessInfo & { ppid: number }) | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined; // a zombie has exited
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return { pid, ppid: Number(fields[1]), startTime: Number(fields[19]), command };
  } catch {
    return undefined;
  }
}

/** `root` and every process below it, as they are now (Linux: reads /proc). */
export function processTree(root: number): ProcessInfo[] {
  const all = readdirSync('/proc')
    .map(Number)
    .filter((pid) => Number.isInteger(pid))
    .map(processInfo)
    .filter((info) => info !== undefined);
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const info of all) {
      if (!tree.has(info.pid) && tree.has(info.ppid)) {
        tree.add(info.pid);
        grew = true;
      }
    }
  }
  return all
    .filter((info) => tree.has(info.pid))
    .map(({ pid, startTime, command }) => ({ pid, startTime, command }));
}

/** Those of `processes` still running (the same process: same pid and start time). */
export function stillRunning(processes: readonly ProcessInfo[]): ProcessInfo[] {
  return processes.filter((known) => processInfo(known.pid)?.startTime === known.startTime);
}
