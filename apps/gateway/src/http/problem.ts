import type { Response } from 'express';
import { sendJson } from './json';

/** RFC 9457 problem details, with `errors` for validation failures. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: { field: string; message: string }[];
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Problem types this API uses. Relative URIs: they name the kind of problem, not a page. */
export const PROBLEM_TYPES = {
  validation: '/problems/validation-error',
  unauthenticated: '/problems/unauthenticated',
  forbidden: '/problems/forbidden',
  notFound: '/problems/not-found',
  methodNotAllowed: '/problems/method-not-allowed',
  conflict: '/problems/conflict',
  idempotencyKeyReused: '/problems/idempotency-key-reused',
  payloadTooLarge: '/problems/payload-too-large',
  unsupportedMediaType: '/problems/unsupported-media-type',
  rateLimited: '/problems/rate-limited',
  clientClosed: '/problems/client-closed-request',
  internal: '/problems/internal-error',
  notImplemented: '/problems/not-implemented',
  unavailable: '/problems/service-unavailable',
  timeout: '/problems/gateway-timeout',
  badRequest: '/problems/bad-request',
} as const;

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** An error a route throws to answer with a problem document. */
export class HttpError extends Error {
  override readonly name = 'HttpError';

  constructor(
    readonly status: number,
    readonly type: string,
    detail: string,
    readonly extra: { errors?: Problem['errors']; headers?: Record<string, string> } = {},
  ) {
    super(detail);
  }
}

export function problem(
  status: number,
  type: string,
  detail: string,
  errors?: Problem['errors'],
): Problem {
  return { type, title: TITLES[status] ?? 'Error', status, detail, ...(errors ? { errors } : {}) };
}

export function sendProblem(
  res: Response,
  body: Problem,
  headers: Record<string, string> = {},
): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendJson(res, body.status, body, `${PROBLEM_CONTENT_TYPE}; charset=utf-8`);
}
