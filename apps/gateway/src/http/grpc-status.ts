import { status } from '@grpc/grpc-js';
import { IDEMPOTENCY_KEY_REUSED } from '@repo/service-kit/idempotency';
import { PROBLEM_TYPES } from './problem';

interface HttpMapping {
  status: number;
  type: string;
}

/**
 * The one table from gRPC status to HTTP, exhaustive by type (a new gRPC code fails the build).
 * FAILED_PRECONDITION is 409: the request is well-formed but conflicts with the current state
 * (not enough stock, an order already cancelled).
 */
export const GRPC_TO_HTTP: { readonly [code in status]: HttpMapping } = {
  [status.OK]: { status: 500, type: PROBLEM_TYPES.internal }, // never an error; here for exhaustiveness
  [status.CANCELLED]: { status: 499, type: PROBLEM_TYPES.clientClosed },
  [status.UNKNOWN]: { status: 500, type: PROBLEM_TYPES.internal },
  [status.INVALID_ARGUMENT]: { status: 400, type: PROBLEM_TYPES.validation },
  [status.DEADLINE_EXCEEDED]: { status: 504, type: PROBLEM_TYPES.timeout },
  [status.NOT_FOUND]: { status: 404, type: PROBLEM_TYPES.notFound },
  [status.ALREADY_EXISTS]: { status: 409, type: PROBLEM_TYPES.conflict },
  [status.PERMISSION_DENIED]: { status: 403, type: PROBLEM_TYPES.forbidden },
  // A backend shedding load (its work queue is full): the service is unavailable right now, and a
  // retry after Retry-After may succeed. Not 429: the client did nothing wrong.
  [status.RESOURCE_EXHAUSTED]: { status: 503, type: PROBLEM_TYPES.unavailable },
  [status.FAILED_PRECONDITION]: { status: 409, type: PROBLEM_TYPES.conflict },
  [status.ABORTED]: { status: 409, type: PROBLEM_TYPES.conflict },
  [status.OUT_OF_RANGE]: { status: 400, type: PROBLEM_TYPES.badRequest },
  [status.UNIMPLEMENTED]: { status: 501, type: PROBLEM_TYPES.notImplemented },
  [status.INTERNAL]: { status: 500, type: PROBLEM_TYPES.internal },
  [status.UNAVAILABLE]: { status: 503, type: PROBLEM_TYPES.unavailable },
  [status.DATA_LOSS]: { status: 500, type: PROBLEM_TYPES.internal },
  [status.UNAUTHENTICATED]: { status: 401, type: PROBLEM_TYPES.unauthenticated },
};

export function httpStatusOf(code: status): HttpMapping {
  return GRPC_TO_HTTP[code] ?? { status: 500, type: PROBLEM_TYPES.internal };
}

/**
 * Field-violation reasons that name a more precise answer than their gRPC code's. An idempotency
 * key reused with another request is 422, as the IETF Idempotency-Key draft says.
 */
const BY_REASON: Readonly<Record<string, HttpMapping>> = {
  [IDEMPOTENCY_KEY_REUSED]: { status: 422, type: PROBLEM_TYPES.idempotencyKeyReused },
};

/** The HTTP answer for a failed call: by a violation's reason when one says more, else by code. */
export function httpMappingOf(code: status, reasons: readonly (string | undefined)[]): HttpMapping {
  for (const reason of reasons) {
    const mapping = reason === undefined ? undefined : BY_REASON[reason];
    if (mapping) return mapping;
  }
  return httpStatusOf(code);
}

/** gRPC field paths are proto names (`items[1].product_id`); HTTP bodies are camelCase. */
export function toCamelPath(field: string): string {
  return field.replace(/_([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}

/**
 * A service's detail with its field names as the API spells them, as in `errors`:
 * "invalid request: items[0].product_id" -> "invalid request: items[0].productId". Only the
 * violations' own field names are rewritten (whole words), never other text of the detail.
 */
export function withApiFieldNames(detail: string, fields: readonly string[]): string {
  const renamed = [...new Set(fields)]
    .filter((field) => toCamelPath(field) !== field)
    .sort((a, b) => b.length - a.length);
  if (renamed.length === 0) return detail;
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(?<![\\w.\\]])(?:${renamed.map(escape).join('|')})(?![\\w[])`, 'g');
  return detail.replace(pattern, (field) => toCamelPath(field));
}
