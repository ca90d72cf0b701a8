import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

/** Metadata key (and HTTP header) carrying the request id across every hop. */
export const REQUEST_ID_KEY = 'x-request-id';

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
