import { performance } from 'node:perf_hooks';
import {
  Metadata,
  credentials,
  status,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { DEADLINE_KEY, REQUEST_ID_KEY, currentContext, isValidRequestId } from './context';

/** No call leaves without a deadline: this one applies when the caller sets none. */
export const DEFAULT_DEADLINE_MS = 2_000;

/**
 * Channel options for service-to-service calls: keepalive pings detect dead peers on idle
 * connections, and reconnection backs off to at most 2 s so a restarted service is found quickly.
 */
export const CLIENT_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2_000,
};

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export interface UnaryCallOptions {
  /** Overrides the client's default deadline for this call. */
  deadlineMs?: number;
  /** Overrides the request id taken from the async request context. */
  requestId?: string;
}

/** The unary methods of a ts-proto generated client, as promises. */
export type PromiseClient<C, K extends PropertyKey> = {
  [M in K & keyof C]: C[M] extends UnaryMethod<infer Req, infer Res>
    ? (request: Req, options?: UnaryCallOptions) => Promise<Res>
    : never;
};

interface GeneratedClientConstructor<C> {
  new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): C;
  service: object;
  serviceName: string;
}

export interface ServiceClientOptions {
  /** Default deadline for each call, in ms. */
  deadlineMs?: number;
  /** Told about every finished call: for metrics. */
  onCallEnd?: (event: { method: string; code: string; durationMs: number }) => void;
}

export type ServiceClient<C, K extends PropertyKey> = PromiseClient<C, K> & {
  /** Closes the channel. */
  close(): void;
};

/** The full name of the service a failed call went to (`user.v1.UserService`), if it came from a ServiceClient. */
export function failedService(error: unknown): string | undefined {
  const service = (error as { service?: unknown } | null | undefined)?.service;
  return typeof service === 'string' ? service : undefined;
}

/**
 * Wraps a ts-proto generated grpc-js client so that every unary call returns a promise, carries a
 * deadline (the per-call or default one, never later than the deadline of the request being
 * served), is cancelled when the request being served is (its context's signal), and carries the
 * current request id as `x-request-id` metadata. A failed call rejects with the
 * grpc-js ServiceError, tagged with the service's name (see `failedService`).
 */
export function createServiceClient<C extends { close(): void }, S extends object>(
  Client: GeneratedClientConstructor<C> & { service: S },
  address: string,
  options: ServiceClientOptions = {},
): ServiceClient<C, keyof S> {
  const raw = new Client(address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  const defaultDeadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const wrapped: Record<string, unknown> = { close: () => raw.close() };
  for (const method of Object.keys(Client.service)) {
    const call = (raw as unknown as Record<string, UnaryMethod<unknown, unknown>>)[method]!.bind(
      raw,
    );
    wrapped[method] = (request: unknown, callOptions: UnaryCallOptions = {}) =>
      new Promise((resolve, reject) => {
        const context = currentContext();
        const metadata = new Metadata();
        const requestId = callOptions.requestId ?? context?.requestId;
        if (isValidRequestId(requestId)) metadata.set(REQUEST_ID_KEY, requestId);
        let deadline = Date.now() + (callOptions.deadlineMs ?? defaultDeadlineMs);
        if (context?.deadline) deadline = Math.min(deadline, context.deadline.getTime());
        metadata.set(DEADLINE_KEY, String(deadline));
        const started = performance.now();
        const signal = context?.signal;
        const onAbort = () => pending.cancel();
        const pending = call(
          request,
          metadata,
          { deadline: new Date(deadline) },
          (error, response) => {
            signal?.removeEventListener('abort', onAbort);
            options.onCallEnd?.({
              method,
              code: status[error ? error.code : status.OK],
              durationMs: performance.now() - started,
            });
            if (error) reject(Object.assign(error, { service: Client.serviceName }));
            else resolve(response);
          },
        );
        // The request being served is over (its caller cancelled, or its deadline passed): cancel
        // this call too, so the callee stops working for nobody.
        if (signal?.aborted) pending.cancel();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });
  }
  return wrapped as ServiceClient<C, keyof S>;
}
