import { isUtf8 } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { REQUEST_ID_KEY, requestIdOrNew, runWithContext } from '@repo/service-kit/context';
import { fieldViolationsOf, isServiceError } from '@repo/service-kit/errors';
import type { Logger } from '@repo/service-kit/logger';
import { SpanStatusCode, startServerSpan, type Span } from '@repo/service-kit/tracing';
import { status as grpcStatus } from '@grpc/grpc-js';
import { backendOf } from '../backends';
import type { Metrics } from '../metrics';
import { httpMappingOf, toCamelPath, withApiFieldNames } from './grpc-status';
import { HttpError, PROBLEM_TYPES, problem, sendProblem } from './problem';
import { pathPattern, type AnyRoute } from './route';

/** Seconds a client should wait before retrying after a 503. */
export const RETRY_AFTER_SECONDS = 5;

/** Operations endpoints: probes and scrapes every few seconds would bury the traces worth seeing. */
const UNTRACED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * X-Request-Id: the caller's when well-formed (1-128 of [A-Za-z0-9._:-]), otherwise a new UUID;
 * echoed on the response, put in the async context (so every log line and every gRPC call of the
 * request carries it).
 *
 * When tracing is on, the request's SERVER span starts here (continuing the caller's
 * `traceparent`, if any), named `METHOD /route/pattern` once the route is known, and its trace id
 * is answered as X-Trace-Id next to X-Request-Id (the span carries the request id as `request.id`),
 * so either finds the other.
 */
export const requestContext: RequestHandler = (req, res, next) => {
  const requestId = requestIdOrNew(req.headers[REQUEST_ID_KEY]);
  res.setHeader('X-Request-Id', requestId);
  const traced = UNTRACED_PATHS.has(req.path)
    ? undefined
    : startServerSpan(req.method, req.headers);
  if (traced) res.setHeader('X-Trace-Id', traced.spanContext().traceId);
  const span = traced?.isRecording() ? traced : undefined;
  span?.setAttributes({
    'http.request.method': req.method,
    'url.path': req.path,
    'url.scheme': req.protocol,
    'request.id': requestId,
  });
  // A client that goes away before its answer cancels the backend calls made for it (the gRPC
  // client wrapper listens to this signal), so no service keeps working for nobody.
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
    if (span) endHttpSpan(span, req, res);
  });
  runWithContext({ requestId, signal: controller.signal, trace: traced }, next);
};

/** Names the span after the route pattern and records the outcome (OpenTelemetry's HTTP conventions). */
function endHttpSpan(span: Span, req: Request, res: Response): void {
  const route = routeLabel(req, res);
  if (route !== 'unmatched') {
    span.updateName(`${req.method} ${route}`);
    span.setAttribute('http.route', route);
  }
  if (res.writableFinished) {
    span.setAttribute('http.response.status_code', res.statusCode);
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  } else {
    // The client left before its answer was complete.
    span.setAttribute('error.type', 'aborted');
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'the client closed the connection' });
  }
  span.end();
}

/**
 * Runs middlewares that finish synchronously (or hand `next` on, as `requestContext` does) one after
 * another as a single Express layer. Every layer is a trip through the router's matching, which
 * showed in the gateway's profile; the steps every request takes need no matching.
 */
export function inOrder(...handlers: RequestHandler[]): RequestHandler {
  return (req, res, next) => {
    let index = 0;
    const step = (error?: unknown): void => {
      if (error !== undefined) {
        next(error);
        return;
      }
      const handler = handlers[index++];
      if (handler) void handler(req, res, step);
      else next();
    };
    step();
  };
}

/** While the gateway drains, every answer asks the client to close its connection. */
export function closeWhenDraining(isDraining: () => boolean): RequestHandler {
  return (_req, res, next) => {
    if (isDraining()) res.setHeader('Connection', 'close');
    next();
  };
}

/** The route pattern a request matched, for metric labels; never the raw path. */
function routeLabel(req: Request, res: Response): string {
  if (typeof res.locals.routePattern === 'string') return res.locals.routePattern; // API routes
  const route: unknown = (req as { route?: unknown }).route;
  const path = route && typeof route === 'object' ? (route as { path?: unknown }).path : undefined;
  return typeof path === 'string' ? `${req.baseUrl}${path}` : 'unmatched';
}

/** Counts and times every request by method, route pattern and status; logs it at info. */
export function observe(metrics: Metrics, logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      const labels = {
        method: req.method,
        route: routeLabel(req, res),
        status: String(res.statusCode),
      };
      metrics.observeHttp(labels, seconds);
      if (logger.isLevelEnabled('info')) {
        logger.info(
          {
            method: req.method,
            route: labels.route,
            status: res.statusCode,
            ms: +(seconds * 1000).toFixed(1),
          },
          'request',
        );
      }
    });
    next();
  };
}

/** Unknown paths are 404; known paths with another method are 405 with Allow. */
export function notFound(
  routes: readonly AnyRoute[],
  extra: Record<string, string[]>,
): RequestHandler {
  const patterns = [
    ...routes.map((route) => ({
      pattern: pathPattern(route.path),
      method: route.method.toUpperCase(),
    })),
    ...Object.entries(extra).flatMap(([path, methods]) =>
      methods.map((method) => ({ pattern: pathPattern(path), method })),
    ),
  ];
  return (req, res) => {
    const allowed = [
      ...new Set(
        patterns.filter(({ pattern }) => pattern.test(req.path)).map(({ method }) => method),
      ),
    ];
    if (allowed.length > 0) {
      if (allowed.includes('GET')) allowed.push('HEAD');
      sendProblem(
        res,
        problem(
          405,
          PROBLEM_TYPES.methodNotAllowed,
          `${req.method} is not allowed here; allowed: ${allowed.join(', ')}`,
        ),
        { Allow: allowed.join(', ') },
      );
      return;
    }
    sendProblem(res, problem(404, PROBLEM_TYPES.notFound, 'no such route'));
  };
}

/** The `type` of the error `verifyUtf8` throws. */
const MALFORMED_UTF8 = 'entity.utf8.malformed';

/**
 * body-parser's `verify` hook for JSON bodies: refuses bytes that are not UTF-8 (RFC 8259 requires
 * it) instead of letting the decoder silently replace them with U+FFFD, so two different inputs
 * never become one string. UTF-16 and UTF-32 bodies (a declared charset) are left to the decoder.
 */
export function verifyUtf8(_req: unknown, _res: unknown, body: Buffer, encoding: string): void {
  if (encoding.toLowerCase().replace('-', '') === 'utf8' && !isUtf8(body)) {
    // status: body-parser keeps it (its own default for a verify failure is 403).
    throw Object.assign(new Error('the body is not UTF-8'), { status: 400, type: MALFORMED_UTF8 });
  }
}

/** body-parser's failures (by their `type`) -> status, problem type and detail. */
const BODY_PARSER_ERRORS: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, PROBLEM_TYPES.badRequest, 'the body is not valid JSON'],
  [MALFORMED_UTF8]: [400, PROBLEM_TYPES.badRequest, 'the body is not valid UTF-8'],
  'entity.too.large': [413, PROBLEM_TYPES.payloadTooLarge, 'the body is too large'],
  'encoding.unsupported': [415, PROBLEM_TYPES.unsupportedMediaType, 'unsupported content encoding'],
  'charset.unsupported': [415, PROBLEM_TYPES.unsupportedMediaType, 'unsupported charset'],
  'request.aborted': [400, PROBLEM_TYPES.badRequest, 'the request was aborted'],
  'request.size.invalid': [
    400,
    PROBLEM_TYPES.badRequest,
    'the body length does not match Content-Length',
  ],
};

/** Problem types for client errors that arrive as a bare HTTP status (see `clientErrorStatus`). */
const CLIENT_ERROR_TYPES: Record<number, string> = {
  401: PROBLEM_TYPES.unauthenticated,
  403: PROBLEM_TYPES.forbidden,
  404: PROBLEM_TYPES.notFound,
  405: PROBLEM_TYPES.methodNotAllowed,
  409: PROBLEM_TYPES.conflict,
  413: PROBLEM_TYPES.payloadTooLarge,
  415: PROBLEM_TYPES.unsupportedMediaType,
  429: PROBLEM_TYPES.rateLimited,
};

/**
 * The 4xx status an error carries (`status` or `statusCode`, as http-errors, body-parser and the
 * Express router set them), or undefined. Such an error is the client's: it is never a 500.
 */
function clientErrorStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  const code = typeof status === 'number' ? status : statusCode;
  return typeof code === 'number' && Number.isInteger(code) && code >= 400 && code < 500
    ? code
    : undefined;
}

/** What went wrong, in words safe to send: never the error's own message (it may echo input). */
function clientErrorDetail(error: unknown, req: Request): string {
  // The router could not decode a path parameter (`/v1/products/%ZZ`).
  if (error instanceof URIError) return 'the request path holds malformed percent-encoding';
  const encoding = req.headers['content-encoding'];
  if (typeof encoding === 'string' && !/^\s*(identity)?\s*$/i.test(encoding)) {
    // zlib failed on a gzip, deflate or br body (Z_DATA_ERROR, Z_BUF_ERROR, a brotli error...).
    return 'the body could not be decoded as its Content-Encoding says';
  }
  return 'the request could not be processed';
}

/**
 * Every error leaves as an RFC 9457 problem document: our own HttpErrors, gRPC statuses through the
 * one mapping table, body-parser failures as 4xx, any other error carrying a 4xx status with that
 * status (never a 500: a malformed path, a body that does not decompress), and anything else as a
 * 500 that leaks nothing.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    if (res.headersSent) {
      req.socket.destroy();
      return;
    }
    if (error instanceof HttpError) {
      sendProblem(
        res,
        { ...problem(error.status, error.type, error.message, error.extra.errors) },
        error.extra.headers,
      );
      return;
    }
    if (isServiceError(error)) {
      const found = fieldViolationsOf(error);
      const mapping = httpMappingOf(
        error.code,
        found.map((violation) => violation.reason),
      );
      const backend = `the ${backendOf(error) ?? 'user'} service`;
      const headers: Record<string, string> = {};
      let detail = withApiFieldNames(
        error.details,
        found.map((violation) => violation.field),
      );
      if (error.code === grpcStatus.UNAVAILABLE) {
        detail = `${backend} is unavailable; retry later`;
        headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
      } else if (error.code === grpcStatus.DEADLINE_EXCEEDED) {
        // Services do no work past a call's deadline and commit only while it holds, so this
        // means "not done" - but for the one window where a commit's answer was lost on the way
        // back. An Idempotency-Key makes the retry safe either way.
        detail = `${backend} did not answer in time and did not carry out the request; retry it (with the same Idempotency-Key, a retry is always safe)`;
      } else if (error.code === grpcStatus.UNIMPLEMENTED) {
        detail = `${backend} does not implement this operation`;
      } else if (error.code === grpcStatus.RESOURCE_EXHAUSTED) {
        // The backend shed this request before doing any of it.
        headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
      } else if (error.code === grpcStatus.ABORTED) {
        // A concurrent request got in the way (the same Idempotency-Key in progress, a deadlock):
        // nothing was done, and retrying shortly is expected to work.
        headers['Retry-After'] = '1';
      } else if (error.code === grpcStatus.UNAUTHENTICATED) {
        // A 401 names how to authenticate (RFC 9110 section 11.6.1): e.g. wrong credentials at
        // /v1/auth/token, whose token is then sent as a Bearer token.
        headers['WWW-Authenticate'] = 'Bearer';
      } else if (mapping.status >= 500) {
        logger.error({ err: error, backend }, 'backend call failed');
        detail = 'an internal error occurred';
      }
      const violations = found.map((violation) => ({
        field: toCamelPath(violation.field),
        message: violation.description,
      }));
      sendProblem(
        res,
        problem(mapping.status, mapping.type, detail, violations.length ? violations : undefined),
        headers,
      );
      return;
    }
    const parserError = error as { type?: unknown; status?: unknown };
    if (typeof parserError.type === 'string' && typeof parserError.status === 'number') {
      const [statusCode, type, detail] = BODY_PARSER_ERRORS[parserError.type] ?? [
        parserError.status >= 400 && parserError.status < 500 ? parserError.status : 400,
        PROBLEM_TYPES.badRequest,
        'the request could not be read',
      ];
      sendProblem(res, problem(statusCode, type, detail));
      return;
    }
    const clientStatus = clientErrorStatus(error);
    if (clientStatus !== undefined) {
      sendProblem(
        res,
        problem(
          clientStatus,
          CLIENT_ERROR_TYPES[clientStatus] ?? PROBLEM_TYPES.badRequest,
          clientErrorDetail(error, req),
        ),
      );
      return;
    }
    logger.error({ err: error }, 'unhandled error');
    sendProblem(res, problem(500, PROBLEM_TYPES.internal, 'an internal error occurred'));
  };
}
