import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { UserRegistered } from '@repo/contracts/user/v1/events';
import { withDatabase } from '@repo/database/admin';
import { newEnvelope } from '@repo/events/envelope';
import { createNatsTransport } from '@repo/events/nats';
import { appendToOutbox } from '@repo/events/outbox';
import { EventTypes } from '@repo/events/subjects';
import { Client } from 'pg';
import { percentile } from './load';
import { ProcessSampler } from './procstats';
import { log, type BenchSystem } from './setup';

/**
 * E1: events through outbox -> broker -> inbox, on a system per transport. The user service writes
 * `user.v1.UserRegistered` into its outbox in the registration's transaction, its relay publishes
 * it, and the order service's consumer `order-users` records the event id in its inbox in the
 * transaction of the effect (its projection of users). After each run the bench reads both
 * databases directly and matches events by id: the latency of one event is its inbox row's
 * `processed_at` minus its outbox row's `occurred_at` (both stamped on this machine's clock, with
 * PostgreSQL's millisecond precision), i.e. from the write (just before it commits) to the start of
 * the effect's transaction (just before it commits).
 */

export const EVENTS_TRANSPORTS = ['postgres', 'nats'] as const;
export type EventsTransport = (typeof EVENTS_TRANSPORTS)[number];

const USER_REGISTERED = EventTypes.UserRegistered;
/** Who consumes it: apps/order's USER_EVENTS_CONSUMER. */
const CONSUMER = 'order-users';

/**
 * The NATS system's settings: a namespace of its own on the shared NATS server (EVENTS_NAMESPACE),
 * so no other system's consumers take its events and its consumers start on an empty stream.
 */
export function natsEnvironment(): Record<string, string> {
  return {
    EVENTS_TRANSPORT: 'nats',
    NATS_URL: process.env.NATS_URL || 'nats://127.0.0.1:4222',
    EVENTS_NAMESPACE: `bench_${randomBytes(4).toString('hex')}`,
  };
}

/**
 * Deletes the namespace's streams (its events and dead letters) from the NATS server, once the
 * system using them has stopped: the server is shared and keeps streams for days.
 */
export async function removeNatsNamespace(environment: Record<string, string>): Promise<void> {
  const stream = `EVENTS_${environment.EVENTS_NAMESPACE}`;
  const nats = await createNatsTransport({
    servers: environment.NATS_URL!.split(','),
    stream,
    prefix: `events_${environment.EVENTS_NAMESPACE}`,
  });
  try {
    for (const name of [stream, `${stream}_DEAD`]) await nats.jsm.streams.delete(name);
  } finally {
    await nats.close();
  }
}

/**
 * - `registrations`: `POST /v1/users` through the gateway, back to back on every connection: the
 *   real producer, limited by scrypt (tens of registrations a second on two cores), so its
 *   latency is that of a pipeline that keeps up.
 * - `burst`: that many events written at once straight into the user service's outbox, one
 *   transaction each, with `appendToOutbox` as a registration writes them, by a few writers: what the relay and the
 *   consumer drain per second when they do not wait for producers; the latency is mostly queueing.
 */
export type EventsLoad = 'registrations' | 'burst';

export interface EventsResult {
  transport: EventsTransport;
  load: EventsLoad;
  /** Events written (outbox rows of the run). */
  events: number;
  /** Events written per second of writing. */
  writtenPerSecond: number;
  /** Events applied per second: all of them over first written -> last applied. */
  appliedPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /**
   * Events not applied once within the wait: outbox rows of the run without an inbox row, and
   * registrations answered 201 without an outbox row. (The inbox's primary key, consumer and event
   * id, makes a second application impossible to record.) Must be 0.
   */
  lost: number;
  /** Registrations answered otherwise (no event is expected for them). */
  failed: number;
  /** CPU % of one core of the apps, from the first write until the last event was applied. */
  processes: Record<string, number>;
}

export interface EventsOptions {
  durationSec: number;
  /** Registrations in flight (as R1). */
  connections: number;
  /** Events in the burst. */
  burst: number;
}

/**
 * The transport of a system started without EVENTS_TRANSPORT of its own: the runner's, or else
 * the environment's, which its apps inherit (default postgres).
 */
export function defaultTransport(bench: BenchSystem): EventsTransport {
  // Every app is given the same transport: any app's environment tells.
  const setting =
    Object.values(bench.system.envs)[0]?.EVENTS_TRANSPORT ?? process.env.EVENTS_TRANSPORT;
  return setting === 'nats' ? 'nats' : 'postgres';
}

/**
 * E1 on one system, whose apps use `transport`: registrations for `durationSec`, then a burst,
 * each until all are applied.
 */
export async function measureEvents(
  bench: BenchSystem,
  transport: EventsTransport,
  options: EventsOptions,
): Promise<EventsResult[]> {
  const results: EventsResult[] = [];
  for (const load of ['registrations', 'burst'] as const) {
    log(
      `E1 ${transport}: ${load === 'registrations' ? `registrations for ${options.durationSec} s at ${options.connections} connections` : `a burst of ${options.burst} events into the outbox`}`,
    );
    const sampler = new ProcessSampler(
      Object.fromEntries(
        (['gateway', 'user', 'order'] as const).map((app) => [app, bench.system.apps[app]!.pid!]),
      ),
    );
    sampler.start();
    const written =
      load === 'registrations'
        ? await register(bench, options.durationSec, options.connections)
        : await writeBurst(bench, options.burst);
    const applied = await awaitApplied(bench, written);
    const cpu = sampler.stop();
    const result: EventsResult = {
      transport,
      load,
      ...applied,
      failed: written.failed,
      processes: Object.fromEntries(Object.entries(cpu).map(([app, p]) => [app, p.cpuPercent])),
    };
    log(
      `E1 ${transport} ${load}: ${result.events} events, written ${result.writtenPerSecond}/s, applied ${result.appliedPerSecond}/s, p50 ${result.p50} ms, p99 ${result.p99} ms, lost ${result.lost}`,
    );
    results.push(result);
  }
  return results;
}

/** What a load wrote: how to find its outbox rows, and how long writing took. */
interface Written {
  /** The outbox rows to look for: by event id (burst) or by aggregate, the user id (registrations). */
  by: 'event_id' | 'aggregate_id';
  ids: string[];
  seconds: number;
  failed: number;
}

const userDatabaseUrl = (bench: BenchSystem) => withDatabase(bench.system.serverUrl, 'user');

/** Registrations back to back on `connections` callers; the ids of those answered 201. */
async function register(
  bench: BenchSystem,
  durationSec: number,
  connections: number,
): Promise<Written> {
  const ids: string[] = [];
  let failed = 0;
  const started = performance.now();
  const until = started + durationSec * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) {
        const response = await fetch(`${bench.gatewayUrl}/v1/users`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            email: `bench-e-${randomUUID()}@example.com`,
            name: 'Bench Event',
            password: 'bench password 123',
          }),
          signal: AbortSignal.timeout(30_000),
        }).catch(() => undefined);
        if (response?.status === 201) ids.push(((await response.json()) as { id: string }).id);
        else {
          failed++;
          await response?.arrayBuffer();
        }
      }
    }),
  );
  return { by: 'aggregate_id', ids, seconds: (performance.now() - started) / 1000, failed };
}

/** Writers at once into the user service's outbox (a few, as a service's pool would). */
const BURST_WRITERS = 4;

/** `count` UserRegistered events into the user service's outbox, one transaction each. */
async function writeBurst(bench: BenchSystem, count: number): Promise<Written> {
  const ids: string[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: BURST_WRITERS }, async () => {
      const pg = new Client({ connectionString: userDatabaseUrl(bench) });
      await pg.connect();
      try {
        while (ids.length < count) {
          const userId = randomUUID();
          // As the user service writes it (the row, and the NOTIFY that wakes the relay).
          const envelope = newEnvelope({
            type: USER_REGISTERED,
            aggregateId: userId,
            source: 'user',
            payload: UserRegistered.encode({
              userId,
              email: `bench-e-${userId}@example.com`,
              name: 'Bench Event',
            }).finish(),
          });
          ids.push(envelope.id);
          await appendToOutbox(pg, envelope);
        }
      } finally {
        await pg.end();
      }
    }),
  );
  return { by: 'event_id', ids, seconds: (performance.now() - started) / 1000, failed: 0 };
}

/** A rate as reported: registrations come a few a second, so one decimal below 10. */
const perSecond = (rate: number) => (rate < 10 ? Math.round(rate * 10) / 10 : Math.round(rate));

/**
 * Waits until every event written is in the order service's inbox (generously: a starved machine
 * must not turn slowness into loss), then matches outbox and inbox rows by event id.
 */
async function awaitApplied(
  bench: BenchSystem,
  written: Written,
): Promise<Omit<EventsResult, 'transport' | 'load' | 'failed' | 'processes'>> {
  const user = new Client({ connectionString: userDatabaseUrl(bench) });
  const order = new Client({ connectionString: bench.orderDatabaseUrl });
  await user.connect();
  await order.connect();
  try {
    const outbox = (
      await user.query<{ event_id: string; occurred_at: Date }>(
        `SELECT "event_id", "occurred_at" FROM "outbox"
          WHERE "type" = $1 AND "${written.by}" = ANY($2::text[])`,
        [USER_REGISTERED, written.ids],
      )
    ).rows;
    const eventIds = outbox.map((row) => row.event_id);
    const limitMs = 60_000 + 20 * eventIds.length;
    const deadline = Date.now() + limitMs;
    const inboxed = async () =>
      (
        await order.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "inbox" WHERE "consumer" = $1 AND "event_id" = ANY($2::text[])`,
          [CONSUMER, eventIds],
        )
      ).rows[0]!.n;
    while ((await inboxed()) < eventIds.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const inbox = new Map(
      (
        await order.query<{ event_id: string; processed_at: Date }>(
          `SELECT "event_id", "processed_at" FROM "inbox" WHERE "consumer" = $1 AND "event_id" = ANY($2::text[])`,
          [CONSUMER, eventIds],
        )
      ).rows.map((row) => [row.event_id, row.processed_at.getTime()]),
    );
    const latencies = outbox
      .filter((row) => inbox.has(row.event_id))
      .map((row) => inbox.get(row.event_id)! - row.occurred_at.getTime())
      .sort((a, b) => a - b);
    const firstWritten = Math.min(...outbox.map((row) => row.occurred_at.getTime()));
    const lastApplied = Math.max(...inbox.values());
    const lost =
      outbox.length -
      inbox.size +
      // A registration answered 201 has exactly one event (by its user id).
      (written.by === 'aggregate_id' ? written.ids.length - outbox.length : 0);
    if (lost > 0) log(`E1: ${lost} events not applied within ${Math.round(limitMs / 1000)} s`);
    return {
      events: outbox.length,
      writtenPerSecond: perSecond(outbox.length / written.seconds),
      appliedPerSecond:
        inbox.size > 0
          ? perSecond((inbox.size * 1000) / Math.max(1, lastApplied - firstWritten))
          : 0,
      p50: Math.round(percentile(latencies, 50)),
      p90: Math.round(percentile(latencies, 90)),
      p99: Math.round(percentile(latencies, 99)),
      max: latencies.at(-1) ?? 0,
      lost,
    };
  } finally {
    await user.end();
    await order.end();
  }
}
