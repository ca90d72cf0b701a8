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
import { IDEMPOTENT_METHODS } from '@repo/contracts/idempotent-methods';
import { DEADLINE_KEY, REQUEST_ID_KEY, currentContext, isValidRequestId } from './context';
import { AVOID_PEER_KEY, AVOID_PEER_POLICY, registerAvoidPeerPolicy } from './balancer';
import { registerFileResolver } from './discovery';
import { DEFAULT_RETRY_POLICY, RetryBudget, backoffMs, type RetryPolicy } from './retry';
import {
  SpanKind,
  endRpcSpan,
  injectTraceContext,
  rpcAttributes,
  startChildSpan,
  type Span,
} from './tracing';

/** No call leaves without a deadline: this one applies when the caller sets none. */
export const DEFAULT_DEADLINE_MS = 2_000;

/**
 * How a channel balances over the replicas its target resolves to (see discovery.ts for targets).
 *
 * `round_robin` sends each call to the next ready replica, over a connection to every one of them;
 * grpc-js's default (`pick_first`) would pin every call to the first address.
 *
 * `avoid_failed_peer` between them (balancer.ts) sends a retry to a replica none of the call's
 * earlier attempts failed on, while there is one.
 *
 * `outlier_detection` around them ejects a replica whose calls keep failing, for 15 s the first time
 * and longer each time it happens again, so callers stop hitting a replica whose database is gone
 * or that hangs. Every half second it ejects a replica that failed at least 85% of at least 10 calls
 * in that half second, never more than half of the replicas (with one replica, nothing is ejected).
 * So a replica that fails fast stops getting calls at the first sweep after its failures reach 10
 * (at most 0.5 s later, under load); until then its failed reads are retried elsewhere. grpc-js
 * counts every non-OK status as a failure, NOT_FOUND included; the high threshold keeps healthy
 * replicas of a backend whose answers are mostly 'not found' in rotation.
 */
export const SERVICE_CONFIG = {
  loadBalancingConfig: [
    {
      outlier_detection: {
        interval: { seconds: 0, nanos: 500_000_000 },
        base_ejection_time: { seconds: 15, nanos: 0 },
        max_ejection_time: { seconds: 120, nanos: 0 },
        max_ejection_percent: 50,
        failure_percentage_ejection: {
          threshold: 85,
          enforcement_percentage: 100,
          minimum_hosts: 2,
          request_volume: 10,
        },
        child_policy: [{ [AVOID_PEER_POLICY]: { child_policy: [{ round_robin: {} }] } }],
      },
    },
  ],
};

/**
 * Channel options for service-to-service calls: keepalive pings detect dead peers on idle
 * connections, reconnection backs off to at most 2 s so a restarted service is found quickly, and
 * DNS targets are re-resolved at most every 5 s (grpc-js waits 30 s by default) when a connection
 * ends, so a scaled-up Deployment's new pods get calls soon after servers recycle connections.
 */
export const CLIENT_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2_000,
  'grpc.dns_min_time_between_resolutions_ms': 5_000,
  // Connections of their own per channel. grpc-js otherwise shares a connection between channels
  // to the same address (the gateway's health client and its service client, say), and a channel
  // whose connections are already up when it starts never counts calls for outlier detection
  // (grpc-js 1.14 wraps that first picker before its config is set), so it never ejects.
  'grpc.use_local_subchannel_pool': 1,
  'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
};

/** Codes after which an idempotent call is tried again (a retry that cannot help is not made). */
const RETRYABLE = new Set<number>([status.UNAVAILABLE]);
/** A retry is made only if at least this much of the deadline would be left for it. */
const MIN_RETRY_ATTEMPT_MS = 20;

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
  /** How idempotent calls are retried; `false`: never (tests of one server's own behaviour). */
  retry?: Partial<RetryPolicy> | false;
  /** Told about every finished call, after its retries: for metrics. */
  onCallEnd?: (event: {
    method: string;
    code: string;
    durationMs: number;
    attempts: number;
  }) => void;
  /** Told about every retry, with the code of the attempt that failed: for metrics. */
  onRetry?: (event: { method: string; code: string }) => void;
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wraps a ts-proto generated grpc-js client so that every unary call returns a promise, carries a
 * deadline (the per-call or default one, never later than the deadline of the request being
 * served), is cancelled when the request being served is (its context's signal), and carries the
 * current request id as `x-request-id` metadata. A failed call rejects with the grpc-js
 * ServiceError, tagged with the service's name (see `failedService`).
 *
 * `address` is a gRPC target (discovery.ts): calls are balanced over every replica it names.
 *
 * Methods the proto marks idempotent (`IDEMPOTENT_METHODS`, generated from `idempotency_level`)
 * are retried when an attempt fails with UNAVAILABLE or outlives `attemptTimeoutMs` (a hung
 * replica): after a jittered backoff, within the call's own deadline (never past it), and only
 * while the client's retry budget allows, so retries add at most ~10% to the load on a backend
 * in trouble. round_robin sends the retry to the next replica. Other methods (writes) are never
 * retried here: the caller decides, with an idempotency key.
 */
export function createServiceClient<C extends { close(): void }, S extends object>(
  Client: GeneratedClientConstructor<C> & { service: S },
  address: string,
  options: ServiceClientOptions = {},
): ServiceClient<C, keyof S> {
  registerFileResolver();
  registerAvoidPeerPolicy();
  const raw = new Client(address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  const defaultDeadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const policy: RetryPolicy | undefined =
    options.retry === false ? undefined : { ...DEFAULT_RETRY_POLICY, ...options.retry };
  const budget = new RetryBudget();
  const wrapped: Record<string, unknown> = { close: () => raw.close() };
  const definitions = Client.service as Record<string, { path: string }>;
  for (const method of Object.keys(definitions)) {
    const call = (raw as unknown as Record<string, UnaryMethod<unknown, unknown>>)[method]!.bind(
      raw,
    );
    const path = definitions[method]!.path;
    const maxAttempts = policy && IDEMPOTENT_METHODS.has(path) ? policy.maxAttempts : 1;
    /** The span name: `user.v1.UserService/GetUser`. */
    const rpc = path.slice(1);
    const wireMethod = rpc.slice(rpc.indexOf('/') + 1);
    /** Its span's attributes, the same for every call (made once, not for each call, sampled or not). */
    const attributes = rpcAttributes(Client.serviceName, wireMethod);

    /** One attempt, cancelled if the request being served ends. */
    const attempt = (
      request: unknown,
      requestId: string | undefined,
      deadline: number,
      signal: AbortSignal | undefined,
      avoidPeers: readonly string[],
      trace: Span | undefined,
    ) =>
      new Promise<unknown>((resolve, reject) => {
        const metadata = new Metadata();
        if (isValidRequestId(requestId)) metadata.set(REQUEST_ID_KEY, requestId);
        metadata.set(DEADLINE_KEY, String(deadline));
        injectTraceContext(trace, metadata);
        for (const peer of avoidPeers) metadata.add(AVOID_PEER_KEY, peer);
        const onAbort = () => pending.cancel();
        const pending = call(
          request,
          metadata,
          { deadline: new Date(deadline) },
          (error, response) => {
            signal?.removeEventListener('abort', onAbort);
            if (error) reject(Object.assign(error, { peer: pending.getPeer() }));
            else resolve(response);
          },
        );
        // The request being served is over (its caller cancelled, or its deadline passed): cancel
        // this call too, so the callee stops working for nobody.
        if (signal?.aborted) pending.cancel();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });

    wrapped[method] = async (request: unknown, callOptions: UnaryCallOptions = {}) => {
      const context = currentContext();
      const requestId = callOptions.requestId ?? context?.requestId;
      let deadline = Date.now() + (callOptions.deadlineMs ?? defaultDeadlineMs);
      if (context?.deadline) deadline = Math.min(deadline, context.deadline.getTime());
      const signal = context?.signal;
      // One span per logical call, its retries as events; unsampled calls pass the request's own
      // trace context on.
      const traced = startChildSpan(rpc, SpanKind.CLIENT, attributes, context?.trace);
      const trace = traced ?? context?.trace;
      const started = performance.now();
      const end = (code: number, attempts: number) => {
        if (traced) endRpcSpan(traced, code, 'client', status[code]);
        options.onCallEnd?.({
          method,
          code: status[code]!,
          durationMs: performance.now() - started,
          attempts,
        });
      };
      if (maxAttempts > 1) budget.deposit();
      const failedPeers: string[] = [];
      for (let attempts = 1; ; attempts++) {
        // An attempt that could be retried gets attemptTimeoutMs; the last one, the rest.
        const retryable = attempts < maxAttempts && budget.canRetry();
        const attemptDeadline = retryable
          ? Math.min(deadline, Date.now() + policy!.attemptTimeoutMs)
          : deadline;
        try {
          const response = await attempt(
            request,
            requestId,
            attemptDeadline,
            signal,
            failedPeers,
            trace,
          );
          end(status.OK, attempts);
          return response;
        } catch (error) {
          const { code, peer } = error as ServiceError & { peer?: string };
          if (peer) failedPeers.push(peer);
          const timedOut = code === status.DEADLINE_EXCEEDED && attemptDeadline < deadline;
          const pause = retryable ? backoffMs(policy!, attempts) : 0;
          const again =
            retryable &&
            (RETRYABLE.has(code) || timedOut) &&
            !signal?.aborted &&
            Date.now() + pause + MIN_RETRY_ATTEMPT_MS < deadline &&
            budget.tryRetry();
          if (!again) {
            end(code, attempts);
            throw Object.assign(error as ServiceError, { service: Client.serviceName });
          }
          options.onRetry?.({ method, code: status[code] });
          traced?.addEvent('retry', {
            'rpc.grpc.status_code': code,
            attempt: attempts + 1,
            'backoff.ms': Math.round(pause),
          });
          await sleep(pause);
        }
      }
    };
  }
  return wrapped as ServiceClient<C, keyof S>;
}
