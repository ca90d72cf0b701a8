import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { Span } from '@opentelemetry/api';

/** Metadata key (and HTTP header) carrying the request id across every hop. */
export const REQUEST_ID_KEY = 'x-request-id';

/**
 * Metadata key carrying the caller's deadline as absolute Unix milliseconds, next to gRPC's own
 * `grpc-timeout`. gRPC sends a *relative* timeout, which the server turns into a deadline when the
 * call arrives: a call that sat in a socket buffer while the server was paused (SIGSTOP, a long GC
 * pause, a stalled VM) would start afresh with its whole timeout, long after its caller gave up.
 * The absolute deadline survives that. It assumes the hosts' clocks agree to within a fraction of
 * the deadline (NTP keeps them within milliseconds); the server takes the earlier of the two.
 */
export const DEADLINE_KEY = 'x-deadline';

/** What is known about the request being served, wherever in the call stack we are. */
export interface RequestContext {
  requestId: string;
  /** The caller's deadline; outgoing calls never outlive it, and no work starts after it. */
  deadline?: Date | undefined;
  /**
   * Aborted when the caller is gone: its deadline passed or it cancelled the call (see
   * `unaryService`). Outgoing gRPC calls are cancelled with it; see `./deadline` for the checks.
   */
  signal?: AbortSignal | undefined;
  /**
   * The span of the work being done, when tracing is on (recorded, or only the ids of an unsampled
   * trace): the parent of the spans it starts and what outgoing calls propagate (see `./tracing`).
   */
  trace?: Span | undefined;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function runWithContext<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** 1-128 characters of letters, digits and `-_.:`; anything else is replaced by a fresh id. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && REQUEST_ID_PATTERN.test(value);
}

/** The caller's request id when it is well-formed, otherwise a new UUID. */
export function requestIdOrNew(value: unknown): string {
  return isValidRequestId(value) ? value : randomUUID();
}
