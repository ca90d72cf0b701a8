import { credentials, makeClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { registerAvoidPeerPolicy } from './balancer';
import { registerFileResolver } from './discovery';
import { CLIENT_CHANNEL_OPTIONS } from './grpc-client';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

type CheckMethod = (
  request: { service: string },
  options: { deadline: Date },
  callback: (error: ServiceError | null, response: { status: ServingStatus }) => void,
) => void;

export interface HealthClient {
  /** The status a server reports for `service` ('' = the whole server); rejects on any call error. */
  check(service?: string, deadlineMs?: number): Promise<ServingStatus>;
  close(): void;
}

const HealthClientConstructor = makeClientConstructor(healthService, 'grpc.health.v1.Health');

/** A grpc.health.v1.Health client, as an orchestrator or the gateway's readiness probe uses it. */
export function createHealthClient(address: string): HealthClient {
  registerFileResolver();
  registerAvoidPeerPolicy();
  const client = new HealthClientConstructor(
    address,
    credentials.createInsecure(),
    CLIENT_CHANNEL_OPTIONS,
  );
  const check = (client as unknown as { check: CheckMethod }).check.bind(client);
  return {
    check: (service = '', deadlineMs = 1_000) =>
      new Promise((resolve, reject) => {
        check({ service }, { deadline: new Date(Date.now() + deadlineMs) }, (error, response) =>
          error ? reject(error) : resolve(response.status),
        );
      }),
    close: () => client.close(),
  };
}

/** One health check on a fresh connection. */
export async function checkHealth(
  address: string,
  service = '',
  deadlineMs = 2_000,
): Promise<ServingStatus> {
  const client = createHealthClient(address);
  try {
    return await client.check(service, deadlineMs);
  } finally {
    client.close();
  }
}

type WatchMethod = (request: { service: string }) => {
  on(event: 'data', listener: (response: { status: ServingStatus }) => void): unknown;
  on(event: 'error', listener: (error: ServiceError) => void): unknown;
  cancel(): void;
};

/**
 * Follows a server's health with the protocol's streaming Watch call, as a load balancer or a
 * client-side balancer would: `onStatus` hears every change (and the first status). Returns a
 * function that stops watching.
 */
export function watchHealth(
  address: string,
  service: string,
  onStatus: (status: ServingStatus) => void,
  onEnd: (error: ServiceError) => void = () => undefined,
): () => void {
  const client = new HealthClientConstructor(address, credentials.createInsecure());
  const watch = (client as unknown as { watch: WatchMethod }).watch.bind(client);
  const stream = watch({ service });
  stream.on('data', (response) => onStatus(response.status));
  stream.on('error', onEnd);
  return () => {
    stream.cancel();
    client.close();
  };
}
