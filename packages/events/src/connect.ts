import { withDatabase } from '@repo/database/admin';
import { createNatsTransport } from './nats';
import { createPostgresTransport } from './postgres';
import { EVENTS_PREFIX } from './subjects';
import type { Transport } from './transport';

/** The settings of `eventsEnv()` (@repo/service-kit/config), as an app's config holds them. */
export interface EventsSettings {
  EVENTS_TRANSPORT: 'postgres' | 'nats';
  EVENTS_DATABASE_URL?: string | undefined;
  NATS_URL: string;
  EVENTS_NAMESPACE?: string | undefined;
  /** The NATS streams' replicas; unset: as they are (see NatsTransportOptions.replicas). */
  EVENTS_STREAM_REPLICAS?: number | undefined;
  /** The relay's `retainSentMs` (see RelayOptions); unset: 0, sent rows deleted at once. */
  OUTBOX_RETAIN_SENT_MS?: number | undefined;
}

/** The broker database's name when EVENTS_DATABASE_URL is not set. */
export const DEFAULT_BROKER_DATABASE = 'events';

/**
 * Connects the transport the settings name. For `postgres` without EVENTS_DATABASE_URL, the broker
 * database is `events` on `serverUrl` (the app's own PostgreSQL server), which is what a service
 * started on its own needs; the local runner points every app at one shared broker database.
 */
export async function connectTransport(
  settings: EventsSettings,
  { name, serverUrl }: { name: string; serverUrl?: string | undefined },
): Promise<Transport> {
  const namespace = settings.EVENTS_NAMESPACE
    ? { prefix: `${EVENTS_PREFIX}_${settings.EVENTS_NAMESPACE}` }
    : {};
  if (settings.EVENTS_TRANSPORT === 'nats') {
    return createNatsTransport({
      servers: settings.NATS_URL.split(',').map((server) => server.trim()),
      name,
      ...namespace,
      ...(settings.EVENTS_NAMESPACE ? { stream: `EVENTS_${settings.EVENTS_NAMESPACE}` } : {}),
      ...(settings.EVENTS_STREAM_REPLICAS ? { replicas: settings.EVENTS_STREAM_REPLICAS } : {}),
    });
  }
  const url =
    settings.EVENTS_DATABASE_URL ??
    (serverUrl ? withDatabase(serverUrl, DEFAULT_BROKER_DATABASE) : undefined);
  if (!url) {
    throw new Error('EVENTS_DATABASE_URL is not set (the postgres events transport needs it)');
  }
  return createPostgresTransport({ url, ...namespace });
}
