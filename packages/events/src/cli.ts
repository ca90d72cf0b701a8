#!/usr/bin/env node
// `pnpm events:tail`, `pnpm events:dead-letters` and `pnpm events:replay`: the events of a running
// system, for learning and debugging. They reach the broker the services use, chosen by the same
// variables (EVENTS_TRANSPORT, EVENTS_DATABASE_URL, NATS_URL); with none set, the `events` database
// of the PostgreSQL that `pnpm dev` runs (found through its data directory, as its port is picked
// at each start).
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Pool } from 'pg';
import { OrderCancelled, OrderPlaced } from '@repo/contracts/order/v1/events';
import { UserDeleted, UserRegistered } from '@repo/contracts/user/v1/events';
import { withDatabase } from '@repo/database/admin';
import { runningServerUrl } from '@repo/database/embedded';
import { DEFAULT_BROKER_DATABASE, connectTransport, type EventsSettings } from './connect';
import type { Envelope } from './envelope';
import { EventTypes, subjectOf, type EventType } from './subjects';
import { errorMessage, type DeadLetter, type Transport } from './transport';

const USAGE = `usage:
  pnpm events:tail [--json] [type ...]          print events as they are published (Ctrl-C stops)
  pnpm events:dead-letters [--json] [consumer]  list dead letters (of every consumer without one)
  pnpm events:replay <consumer> <event-id>      deliver a dead letter again, to that consumer only

The broker: EVENTS_TRANSPORT (postgres | nats), EVENTS_DATABASE_URL, NATS_URL, EVENTS_NAMESPACE, as
the services read them; unset, the "events" database of the PostgreSQL \`pnpm dev\` runs (DATA_DIR,
default .data).
Event types: ${Object.values(EventTypes).join(', ')}.`;

/** The repository root, where DATA_DIR is relative to (as for `pnpm dev`). */
const ROOT = resolve(__dirname, '..', '..', '..');

/** A mistake of the person typing: the message and the usage, no stack. */
class UsageError extends Error {}

/** Each event type's payload decoded by its generated (ts-proto) message, as protobuf JSON. */
const decode = <T>(message: { decode(bytes: Uint8Array): T; toJSON(value: T): unknown }) => {
  return (bytes: Uint8Array) => message.toJSON(message.decode(bytes));
};
const PAYLOADS: Record<EventType, (bytes: Uint8Array) => unknown> = {
  [EventTypes.UserRegistered]: decode(UserRegistered),
  [EventTypes.UserDeleted]: decode(UserDeleted),
  [EventTypes.OrderPlaced]: decode(OrderPlaced),
  [EventTypes.OrderCancelled]: decode(OrderCancelled),
};

export function payloadJson(envelope: Envelope): unknown {
  const bytes = Buffer.from(envelope.payload);
  const decoder = PAYLOADS[envelope.type as EventType] as
    ((bytes: Uint8Array) => unknown) | undefined;
  if (!decoder)
    return { undecoded: `no decoder for ${envelope.type}`, base64: bytes.toString('base64') };
  try {
    return decoder(bytes);
  } catch (error) {
    return { undecoded: errorMessage(error), base64: bytes.toString('base64') };
  }
}

/** The broker settings the services would use, from the same variables. */
export function settingsFromEnv(
  env: NodeJS.ProcessEnv,
  root = ROOT,
): EventsSettings & { where: string } {
  const transport = env.EVENTS_TRANSPORT || 'postgres';
  const natsUrl = env.NATS_URL || 'nats://127.0.0.1:4222';
  // A system of its own on a shared broker (the e2e tests' systems) names its events apart.
  const namespace = env.EVENTS_NAMESPACE;
  const named = namespace ? { EVENTS_NAMESPACE: namespace } : {};
  const within = namespace ? ` (namespace ${namespace})` : '';
  if (transport === 'nats') {
    return { EVENTS_TRANSPORT: 'nats', NATS_URL: natsUrl, ...named, where: natsUrl + within };
  }
  if (transport !== 'postgres') {
    throw new UsageError(`EVENTS_TRANSPORT must be postgres or nats (got "${transport}")`);
  }
  let url = env.EVENTS_DATABASE_URL;
  if (!url) {
    const dataDir = join(resolve(root, env.DATA_DIR || '.data'), 'postgres');
    const server = runningServerUrl(dataDir);
    if (!server) {
      throw new Error(
        `no PostgreSQL of \`pnpm dev\` is running on ${dataDir}: start \`pnpm dev\`, or say where the broker is (EVENTS_DATABASE_URL, or EVENTS_TRANSPORT=nats and NATS_URL)`,
      );
    }
    url = withDatabase(server, DEFAULT_BROKER_DATABASE);
  }
  const { host, pathname } = new URL(url);
  return {
    EVENTS_TRANSPORT: 'postgres',
    EVENTS_DATABASE_URL: url,
    NATS_URL: natsUrl,
    ...named,
    where: `postgres ${host}${pathname}${within}`,
  };
}

/** One line of output: the event's fields, then its payload as JSON. */
export function eventLine(envelope: Envelope): string {
  return [
    envelope.occurredAt?.toISOString() ?? '-',
    envelope.type,
    `aggregate=${envelope.aggregateId}`,
    `id=${envelope.id}`,
    `source=${envelope.source}`,
    JSON.stringify(payloadJson(envelope)),
  ].join(' ');
}

export function eventJson(envelope: Envelope): Record<string, unknown> {
  return {
    id: envelope.id,
    type: envelope.type,
    aggregateId: envelope.aggregateId,
    source: envelope.source,
    occurredAt: envelope.occurredAt?.toISOString(),
    sequence: envelope.sequence,
    traceparent: envelope.traceparent || undefined,
    payload: payloadJson(envelope),
  };
}

function deadLetterLine(letter: DeadLetter): string {
  return [
    letter.deadAt.toISOString(),
    letter.consumer,
    `attempts=${letter.attempts}`,
    `error=${JSON.stringify(letter.error)}`,
    eventLine(letter.envelope),
  ].join(' ');
}

/** Writes a line; false once stdout is gone (a closed pipe: `| head`). */
function write(line: string): boolean {
  if (process.stdout.destroyed) return false;
  process.stdout.write(`${line}\n`);
  return true;
}

/** Resolves on Ctrl-C, SIGTERM or stdout closing; a second Ctrl-C leaves at once. */
function stopRequested(): Promise<void> {
  return new Promise((resolveStop) => {
    const stop = () => {
      process.once('SIGINT', () => process.exit(130));
      resolveStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.stdout.once('error', stop); // EPIPE
  });
}

/**
 * Prints every event of `types` (default all) published from now on, through a live consumer of
 * its own (`tail-<random>`), which stopping removes; the broker removes it too if this process
 * dies without stopping.
 */
async function tail(transport: Transport, types: string[], json: boolean): Promise<void> {
  const subjects = (types.length ? types : Object.values(EventTypes)).map((type) =>
    subjectOf(type, transport.prefix),
  );
  const consumer = `tail-${randomBytes(4).toString('hex')}`;
  const stopped = stopRequested();
  const subscription = await transport.subscribe(
    consumer,
    subjects,
    ({ envelope }) => {
      write(json ? JSON.stringify(eventJson(envelope)) : eventLine(envelope));
      return Promise.resolve();
    },
    { live: true },
  );
  process.stderr.write(
    `tailing ${subjects.length === 1 ? types[0] : `${subjects.length} event types`} as ${consumer} (Ctrl-C stops)\n`,
  );
  await stopped;
  await subscription.stop();
}

/**
 * The consumers that have dead letters. The port lists one consumer's, so this asks the broker:
 * the broker database's table, or the dead-letter stream's subjects (one per consumer).
 */
async function consumersWithDeadLetters(transport: Transport): Promise<string[]> {
  if ('pool' in transport) {
    const { rows } = await (transport.pool as Pool).query<{ consumer: string }>(
      'SELECT DISTINCT consumer FROM events_dead_letters ORDER BY consumer',
    );
    return rows.map((row) => row.consumer);
  }
  const nats = transport as Transport & {
    jsm: JetStreamManager;
    deadStream: string;
    deadSubject(consumer: string): string;
  };
  const prefix = nats.deadSubject('');
  const { state } = await nats.jsm.streams.info(nats.deadStream, {
    subjects_filter: `${prefix}>`,
  });
  return Object.keys(state.subjects ?? {})
    .map((subject) => subject.slice(prefix.length))
    .sort();
}

async function listDeadLetters(
  transport: Transport,
  consumers: string[],
  json: boolean,
): Promise<void> {
  const letters: DeadLetter[] = [];
  for (const consumer of consumers.length ? consumers : await consumersWithDeadLetters(transport)) {
    letters.push(...(await transport.deadLetters(consumer)));
  }
  for (const letter of letters) {
    const { envelope, ...rest } = letter;
    write(json ? JSON.stringify({ ...rest, event: eventJson(envelope) }) : deadLetterLine(letter));
  }
  process.stderr.write(
    letters.length
      ? `${letters.length} dead letter(s); replay one with: pnpm events:replay <consumer> <event-id>\n`
      : 'no dead letters\n',
  );
}

async function replay(transport: Transport, [consumer, eventId]: string[]): Promise<void> {
  await transport.replayDeadLetter(consumer!, eventId!);
  write(`replayed ${eventId} to ${consumer}`);
}

/** The arguments' mistakes, found before connecting to anything. */
function checkArguments(command: 'tail' | 'dead-letters' | 'replay', args: string[]): void {
  if (command === 'replay' && args.length !== 2) {
    throw new UsageError('events:replay takes a consumer and an event id');
  }
  if (command === 'dead-letters' && args.length > 1) {
    throw new UsageError('events:dead-letters takes one consumer at most');
  }
  if (command === 'tail') {
    for (const type of args) {
      try {
        subjectOf(type);
      } catch (error) {
        throw new UsageError(errorMessage(error));
      }
    }
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json');
  const args = rest.filter((arg) => arg !== '--json');
  const unknown = args.find((arg) => arg.startsWith('-'));
  if (unknown) throw new UsageError(`unknown option ${unknown}`);
  if (command !== 'tail' && command !== 'dead-letters' && command !== 'replay') {
    throw new UsageError(command ? `unknown command ${command}` : 'which command?');
  }
  checkArguments(command, args);
  const { where, ...settings } = settingsFromEnv(process.env);
  const transport = await connectTransport(settings, { name: `events-cli-${command}` });
  process.stderr.write(`events on ${where}\n`);
  try {
    if (command === 'tail') await tail(transport, args, json);
    else if (command === 'dead-letters') await listDeadLetters(transport, args, json);
    else await replay(transport, args);
  } finally {
    await transport.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(
        error instanceof UsageError ? `${error.message}\n\n${USAGE}\n` : `${errorMessage(error)}\n`,
      );
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
