import { randomBytes } from 'node:crypto';
import { dropDatabase, ensureDatabase, withDatabase } from '@repo/database/admin';
import { newEnvelope, type Envelope } from '../src/envelope';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** A short random name: databases, consumers, streams, subject prefixes. */
export const unique = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/** A new, empty database on the test server; `drop` removes it. */
export async function createDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = process.env.EVENTS_TEST_SERVER_URL;
  if (!serverUrl) throw new Error('EVENTS_TEST_SERVER_URL is not set: run through jest.config.cjs');
  const name = unique('events_test');
  await ensureDatabase(serverUrl, name);
  return { url: withDatabase(serverUrl, name), drop: () => dropDatabase(serverUrl, name) };
}

/** Resolves once `check` is true; fails after `timeoutMs` with `what` in the message. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A test event of `type` about `aggregateId`, the payload being `body` in UTF-8. */
export function testEvent(type: string, aggregateId: string, body = ''): Envelope {
  return newEnvelope({
    type,
    aggregateId,
    payload: Buffer.from(body),
    source: 'test',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  });
}

export const bodyOf = (envelope: Envelope) => Buffer.from(envelope.payload).toString('utf8');

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
