import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { BadRequest } from '@repo/contracts/google/rpc/error_details';
import { Status } from '@repo/contracts/google/rpc/status';

/**
 * The closed set of outcomes a domain operation may report besides success. Each has exactly one
 * gRPC status (see `grpcStatusOf`); HTTP never appears at this layer.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED';

/** One bad field of a request: `field` is a path such as `email` or `items[2].quantity`. */
export interface FieldViolation {
  field: string;
  description: string;
  /** Machine-readable, e.g. REQUIRED, TOO_LONG, INVALID_FORMAT. */
  reason?: string;
}

/** An expected failure of a domain rule. Its message is safe to show to the caller. */
export class DomainError extends Error {
  override readonly name = 'DomainError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly violations: readonly FieldViolation[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** INVALID_ARGUMENT carrying one violation per bad field. */
  static invalid(violations: readonly FieldViolation[]): DomainError {
    const fields = violations.map((violation) => violation.field).join(', ');
    return new DomainError('INVALID_ARGUMENT', `invalid request: ${fields}`, violations);
  }
}

/** The one mapping from domain codes to gRPC status. A missing code fails type checking. */
const GRPC_STATUS: { readonly [code in ErrorCode]: status } = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ABORTED: status.ABORTED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
};

export function grpcStatusOf(code: ErrorCode): status {
  return GRPC_STATUS[code];
}

/** Trailer carrying a serialized google.rpc.Status with structured details (gRPC convention). */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const BAD_REQUEST_TYPE_URL = 'type.googleapis.com/google.rpc.BadRequest';

/**
 * Turns anything a handler threw into what goes on the wire. A DomainError keeps its code,
 * message and field violations; anything else becomes INTERNAL with a generic message, so no
 * internals (SQL, stack traces, file paths) leak to callers. `expected` tells the caller whether to
 * log it as a bug.
 */
export function toStatusObject(error: unknown): {
  status: Partial<StatusObject>;
  expected: boolean;
} {
  if (!(error instanceof DomainError)) {
    return { status: { code: status.INTERNAL, details: 'internal error' }, expected: false };
  }
  const code = grpcStatusOf(error.code);
  const metadata = new Metadata();
  if (error.violations.length > 0) {
    const badRequest = BadRequest.encode({
      fieldViolations: error.violations.map((violation) => ({
        field: violation.field,
        description: violation.description,
        reason: violation.reason ?? '',
      })),
    }).finish();
    const details = Status.encode({
      code,
      message: error.message,
      details: [{ typeUrl: BAD_REQUEST_TYPE_URL, value: Buffer.from(badRequest) }],
    }).finish();
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(details));
  }
  return { status: { code, details: error.message, metadata }, expected: true };
}

/** Client side: the field violations a failed call carried, if any. */
export function fieldViolationsOf(error: ServiceError): FieldViolation[] {
  const raw = error.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!raw || typeof raw === 'string') return [];
  try {
    const decoded = Status.decode(raw);
    return decoded.details
      .filter((detail) => detail.typeUrl === BAD_REQUEST_TYPE_URL)
      .flatMap((detail) => BadRequest.decode(detail.value).fieldViolations)
      .map((violation) => ({
        field: violation.field,
        description: violation.description,
        ...(violation.reason ? { reason: violation.reason } : {}),
      }));
  } catch {
    return [];
  }
}

/** True for errors that grpc-js produces for a failed call. */
export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === 'number' &&
    'metadata' in error
  );
}
