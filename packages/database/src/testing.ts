import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
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
