import type { Request, RequestHandler, Response, Router } from 'express';
import type { z } from 'zod';
import { currentContext } from '@repo/service-kit/context';
import type { TokenService } from '../auth/tokens';
import { invalidToken } from '../auth/tokens';
import { sendJson } from './json';
import { HttpError, PROBLEM_TYPES } from './problem';

type Schema = z.ZodType | undefined;
type Infer<S extends Schema> = S extends z.ZodType ? z.output<S> : undefined;

export interface ResponseSpec {
  description: string;
  schema?: z.ZodType;
  /** The answer's media type when it is not JSON (a `stream` route's). */
  mediaType?: string;
  /** Headers of the successful answer besides the common ones, for the document. */
  headers?: Record<string, { description: string; schema: Record<string, unknown> }>;
}

export interface RouteContext<
  P extends Schema,
  Q extends Schema,
  B extends Schema,
  H extends Schema,
  A extends boolean,
> {
  params: Infer<P>;
  query: Infer<Q>;
  body: Infer<B>;
  headers: Infer<H>;
  /** The authenticated caller, on routes with `auth: true`. */
  user: A extends true ? { id: string } : undefined;
  req: Request;
  res: Response;
}

/**
 * One route, described once: the schemas here validate requests at run time *and* generate the
 * OpenAPI document (src/openapi/document.ts), so the two cannot disagree.
 */
export interface RouteSpec<
  P extends Schema = Schema,
  Q extends Schema = Schema,
  B extends Schema = Schema,
  H extends Schema = Schema,
  A extends boolean = boolean,
> {
  operationId: string;
  method: 'get' | 'post' | 'delete';
  /** Express-style path, e.g. `/v1/orders/:id`. */
  path: string;
  summary: string;
  description?: string;
  tag: string;
  auth: A;
  params?: P;
  query?: Q;
  /** A JSON request body (the route then requires `Content-Type: application/json`). */
  body?: B;
  /** Request headers the route reads, lower-case names. */
  headers?: H;
  /** Status of a successful answer; 204 sends no body (whatever `handle` returns). */
  status: number;
  /**
   * `handle` writes the successful answer itself (a stream that stays open) and what it returns is
   * ignored; it still throws HttpErrors, before writing, for the problem answers.
   */
  stream?: boolean;
  /** The successful answer's body schema. */
  response: ResponseSpec;
  /**
   * For a 201: where the created resource can be read, as a path template whose `{id}` is the
   * answer's `id` (`/v1/orders/{id}`); sent as `Location` and documented.
   */
  location?: string;
  /** Other answers worth documenting besides the common ones (400, 401, 429, 5xx). */
  errors?: Record<number, string>;
  handle: (context: RouteContext<P, Q, B, H, A>) => Promise<unknown>;
}

/** A route with its schema types erased, as the router and the OpenAPI generator see it. */
export type AnyRoute = RouteSpec<Schema, Schema, Schema, Schema, boolean>;

/** Typed identity: infers the schemas so `handle` sees parsed, typed input. */
export function defineRoute<
  P extends Schema,
  Q extends Schema,
  B extends Schema,
  H extends Schema,
  A extends boolean,
>(spec: RouteSpec<P, Q, B, H, A>): AnyRoute {
  return spec;
}

/** Zod issues -> `errors` entries, with field paths like `items[0].productId`. */
function fieldErrors(
  issues: z.core.$ZodIssue[],
  prefix: string,
): { field: string; message: string }[] {
  return issues.map((issue) => {
    let field = prefix;
    for (const segment of issue.path) {
      if (typeof segment === 'number') field += `[${segment}]`;
      else field += field ? `.${String(segment)}` : String(segment);
    }
    return { field: field || '(body)', message: issue.message };
  });
}

export interface MountOptions {
  tokens: TokenService;
  routeDeadlineMs: number;
  /** Parses JSON bodies; mounted only on routes that take one. */
  jsonParser: RequestHandler;
}

const isJson = (req: Request) =>
  typeof req.is(['application/json', 'application/*+json']) === 'string';

/**
 * Registers routes on an Express router mounted at `basePath` (their paths are written in full, as
 * the OpenAPI document shows them): auth, validation, a deadline, then the handler.
 */
export function mountRoutes(
  router: Router,
  basePath: string,
  routes: readonly AnyRoute[],
  options: MountOptions,
): void {
  for (const route of routes) {
    if (!route.path.startsWith(`${basePath}/`))
      throw new Error(`route ${route.path} is not under ${basePath}`);
    const path = route.path.slice(basePath.length);
    const handler: RequestHandler = async (req, res) => {
      // For metrics and logs: the pattern, never the raw path (and whole: `req.baseUrl` is gone by
      // the time an error reaches the app-level error handler).
      res.locals.routePattern = route.path;
      let user: { id: string } | undefined;
      if (route.auth) {
        const header = req.headers.authorization;
        // The scheme is case-insensitive (RFC 9110 section 11.1); the token is a token68.
        const match =
          typeof header === 'string' ? /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(header) : null;
        if (!match) {
          throw new HttpError(
            401,
            PROBLEM_TYPES.unauthenticated,
            'send an access token: Authorization: Bearer <token>',
            {
              headers: { 'WWW-Authenticate': 'Bearer' },
            },
          );
        }
        if (match[1]!.length > 4096) throw invalidToken('the access token is invalid');
        user = { id: await options.tokens.verify(match[1]!) };
      }

      if (route.body && !isJson(req)) {
        throw new HttpError(
          415,
          PROBLEM_TYPES.unsupportedMediaType,
          'the request body must be JSON (Content-Type: application/json)',
        );
      }

      const errors: { field: string; message: string }[] = [];
      const parse = <S extends Schema>(schema: S, value: unknown, prefix: string): Infer<S> => {
        if (!schema) return undefined as Infer<S>;
        const result = schema.safeParse(value);
        if (result.success) return result.data as Infer<S>;
        errors.push(...fieldErrors(result.error.issues, prefix));
        return undefined as Infer<S>;
      };
      const params = parse(route.params, req.params, '');
      const query = parse(route.query, req.query, '');
      const headers = parse(route.headers, req.headers, '');
      const body = parse(route.body, req.body, '');
      if (errors.length > 0) {
        throw new HttpError(400, PROBLEM_TYPES.validation, 'the request is invalid: see errors', {
          errors,
        });
      }

      // Every backend call made for this request inherits this deadline (see the gRPC client). The
      // request's context object is updated in place: one AsyncLocalStorage scope per request.
      const context = currentContext();
      if (context) context.deadline = new Date(Date.now() + options.routeDeadlineMs);
      const result = await route.handle({ params, query, body, headers, user, req, res });
      if (route.stream) return;
      if (route.status === 204) {
        res.statusCode = 204;
        res.end();
        return;
      }
      if (route.location) {
        const id = (result as { id?: unknown }).id;
        res.setHeader('Location', route.location.replace('{id}', encodeURIComponent(String(id))));
      }
      sendJson(res, route.status, result);
    };
    if (route.body) {
      const { jsonParser } = options;
      // The route pattern is set before the body is read, so a request refused while reading it
      // (malformed JSON, too large) is counted under its route, not under the router's own path.
      const parseBody: RequestHandler = (req, res, next) => {
        res.locals.routePattern = route.path;
        jsonParser(req, res, next);
      };
      router[route.method](path, parseBody, handler);
    } else router[route.method](path, handler);
  }
}

/** `/v1/orders/:id` -> a RegExp matching concrete paths, for 405 detection. */
export function pathPattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) =>
      segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}/?$`);
}
