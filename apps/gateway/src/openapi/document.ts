import { z } from 'zod';
import type { AnyRoute } from '../http/route';
import { PROBLEM_CONTENT_TYPE, PROBLEM_TYPES } from '../http/problem';
import { Liveness, Problem, Readiness, ReadinessProblem } from '../routes/schemas';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    target: 'draft-2020-12',
  });
  return rest;
}

/** The properties of an object schema as OpenAPI parameters of one location. */
function parameters(
  schema: z.ZodType | undefined,
  location: 'path' | 'query' | 'header',
): JsonSchema[] {
  if (!schema) return [];
  const object = jsonSchema(schema, 'input') as {
    properties?: Record<string, JsonSchema>;
    required?: string[];
  };
  return Object.entries(object.properties ?? {}).map(([name, property]) => {
    const { description, ...propertySchema } = property;
    return {
      name:
        location === 'header'
          ? name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase())
          : name,
      in: location,
      required: location === 'path' || (object.required ?? []).includes(name),
      ...(description ? { description } : {}),
      schema: propertySchema,
    };
  });
}

/** Response headers, described once in `components.headers` and referenced by each answer. */
const HEADERS: Record<string, JsonSchema> = {
  'X-Request-Id': {
    description:
      "The request's id: the caller's `X-Request-Id` when it is 1-128 characters of `[A-Za-z0-9._:-]`, " +
      'otherwise a new UUID. It is on every log line the request causes, in every service.',
    required: true,
    schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
  },
  'X-Trace-Id': {
    description:
      "The request's trace id (32 hex digits) while tracing is on: find the trace in the tracing " +
      "backend (if it was sampled) and the request's log lines, in every service, by it.",
    schema: { type: 'string', pattern: '^[0-9a-f]{32}$' },
  },
  RateLimit: {
    description:
      "This client's budget in the current window (IETF draft-7 `RateLimit`): " +
      '`limit=100, remaining=99, reset=60`. On every answer under `/v1` while rate limiting is on ' +
      '(`RATE_LIMIT_MAX` > 0), except when the shared count (Redis) could not be reached: the ' +
      'request is then served uncounted.',
    schema: { type: 'string', pattern: '^limit=\\d+, remaining=\\d+, reset=\\d+$' },
  },
  'RateLimit-Policy': {
    description:
      'The quota policy (IETF draft-7 `RateLimit-Policy`): `100;w=60` is 100 requests per 60 s. ' +
      'Sent with `RateLimit`.',
    schema: { type: 'string', pattern: '^\\d+;w=\\d+$' },
  },
  'Retry-After': {
    description: 'Seconds to wait before retrying.',
    required: true,
    schema: { type: 'integer', minimum: 0 },
  },
  'WWW-Authenticate': {
    description: 'How to authenticate: `Bearer`, with `error="invalid_token"` for a token refused.',
    required: true,
    schema: { type: 'string', pattern: '^Bearer( |$)' },
  },
  Location: {
    description: 'Where the created resource can be read (a GET of this path answers with it).',
    required: true,
    schema: { type: 'string', format: 'uri-reference' },
  },
};

const header = (name: keyof typeof HEADERS) => ({ $ref: `#/components/headers/${name}` });

/** The headers of every answer under /v1, and of every operations endpoint. */
const API_HEADERS = {
  'X-Request-Id': header('X-Request-Id'),
  'X-Trace-Id': header('X-Trace-Id'),
  RateLimit: header('RateLimit'),
  'RateLimit-Policy': header('RateLimit-Policy'),
};
const OPERATIONS_HEADERS = { 'X-Request-Id': header('X-Request-Id') };

/** The `type` each error status comes with (src/http/problem.ts, grpc-status.ts, middleware.ts). */
const PROBLEM_TYPES_BY_STATUS: Record<number, string[]> = {
  400: [PROBLEM_TYPES.validation, PROBLEM_TYPES.badRequest],
  401: [PROBLEM_TYPES.unauthenticated],
  403: [PROBLEM_TYPES.forbidden],
  404: [PROBLEM_TYPES.notFound],
  409: [PROBLEM_TYPES.conflict],
  413: [PROBLEM_TYPES.payloadTooLarge],
  415: [PROBLEM_TYPES.unsupportedMediaType],
  422: [PROBLEM_TYPES.idempotencyKeyReused],
  429: [PROBLEM_TYPES.rateLimited],
  500: [PROBLEM_TYPES.internal],
  503: [PROBLEM_TYPES.unavailable],
  504: [PROBLEM_TYPES.timeout],
};

/** Headers an error answer carries besides the common ones. */
function errorHeaders(status: number): Record<string, unknown> {
  if (status === 401) return { 'WWW-Authenticate': header('WWW-Authenticate') };
  if (status === 429 || status === 503) return { 'Retry-After': header('Retry-After') };
  if (status === 409) {
    // ABORTED (a concurrent request got in the way: the same Idempotency-Key in progress, a
    // deadlock) is a 409 that is expected to succeed when retried shortly.
    return {
      'Retry-After': {
        description: 'When the conflict was a concurrent request (retry shortly): seconds to wait.',
        schema: { type: 'integer', minimum: 0 },
      },
    };
  }
  return {};
}

/** A problem document answer with `status`; its `status` and `type` fields are pinned. */
function problemResponse(
  status: number,
  description: string,
  common: Record<string, unknown>,
  schemaRef = '#/components/schemas/Problem',
): JsonSchema {
  const types = PROBLEM_TYPES_BY_STATUS[status];
  return {
    description,
    headers: { ...common, ...errorHeaders(status) },
    content: {
      [PROBLEM_CONTENT_TYPE]: {
        schema: {
          allOf: [
            { $ref: schemaRef },
            {
              properties: {
                status: { const: status },
                ...(types
                  ? { type: types.length === 1 ? { const: types[0] } : { enum: types } }
                  : {}),
              },
            },
          ],
        },
      },
    },
  };
}

const json = (schema: JsonSchema) => ({ 'application/json': { schema } });

/** The tags of the hand-written route groups, in the document's order. */
const TAGS = [
  { name: 'users', description: 'Accounts' },
  { name: 'auth', description: 'Access tokens' },
  { name: 'catalog', description: 'Products' },
  { name: 'orders', description: "The caller's orders" },
];

/**
 * OpenAPI 3.1 for the API, generated from the same route specs and zod schemas that validate
 * requests (see src/http/route.ts). JSON Schema 2020-12 is OpenAPI 3.1's schema dialect.
 */
export function buildOpenApiDocument(routes: readonly AnyRoute[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:([A-Za-z]+)/g, '{$1}');
    const problems: Partial<Record<number, string>> = {
      400: 'The request is invalid; `errors` names each bad field.',
      ...(route.auth ? { 401: 'Missing, invalid or expired access token.' } : {}),
      ...(route.body ? { 413: 'The body is too large.', 415: 'The body is not JSON.' } : {}),
      429: 'Too many requests from this client; see Retry-After.',
      500: 'An internal error (nothing about it is disclosed).',
      503:
        'A backend service is unavailable, or shedding load (e.g. password hashing is saturated); ' +
        'nothing was done: retry after Retry-After.',
      504: 'A backend service did not answer in time; the request was not carried out.',
      // A route's own descriptions win (its 503 may have causes of its own).
      ...route.errors,
    };
    const responses: Record<string, unknown> = {
      [route.status]: {
        description: route.response.description,
        headers: {
          ...API_HEADERS,
          ...(route.location ? { Location: header('Location') } : {}),
          ...route.response.headers,
        },
        ...(route.response.schema
          ? {
              content: {
                [route.response.mediaType ?? 'application/json']: {
                  schema: jsonSchema(route.response.schema, 'output'),
                },
              },
            }
          : {}),
      },
      ...Object.fromEntries(
        Object.entries(problems).map(([status, description]) => [
          status,
          problemResponse(Number(status), description ?? '', API_HEADERS),
        ]),
      ),
    };
    paths[path] ??= {};
    paths[path][route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      description:
        (route.description ?? route.summary) +
        (route.location ? ` The answer's \`Location\` is \`${route.location}\`.` : ''),
      tags: [route.tag],
      security: route.auth ? [{ bearerAuth: [] }] : [],
      parameters: [
        ...parameters(route.params, 'path'),
        ...parameters(route.query, 'query'),
        ...parameters(route.headers, 'header'),
      ],
      ...(route.body
        ? { requestBody: { required: true, content: json(jsonSchema(route.body, 'input')) } }
        : {}),
      responses,
    };
  }

  const operation = (
    operationId: string,
    summary: string,
    description: string,
    responses: Record<string, unknown>,
  ) => ({
    get: { operationId, summary, description, tags: ['operations'], security: [], responses },
  });
  paths['/healthz'] = operation(
    'liveness',
    'The process is up',
    'Answers 200 while the process runs, whatever its backends do (a liveness probe).',
    {
      200: {
        description: 'Alive.',
        headers: OPERATIONS_HEADERS,
        content: json(jsonSchema(Liveness, 'output')),
      },
    },
  );
  paths['/readyz'] = operation(
    'readiness',
    'Both backend services answer health checks SERVING',
    'A readiness probe: 200 when both services report SERVING, 503 when one does not or while the ' +
      'gateway shuts down.',
    {
      200: {
        description: 'Ready.',
        headers: OPERATIONS_HEADERS,
        content: json(jsonSchema(Readiness, 'output')),
      },
      503: problemResponse(
        503,
        'Not ready; `checks` says which service is not serving.',
        OPERATIONS_HEADERS,
        '#/components/schemas/ReadinessProblem',
      ),
    },
  );
  paths['/metrics'] = operation(
    'metrics',
    'Prometheus metrics',
    'HTTP requests and gRPC calls by route or method and status, and process metrics, in the ' +
      'Prometheus text format. Compressed when the client accepts it.',
    {
      200: {
        description: 'Prometheus text format 0.0.4.',
        headers: OPERATIONS_HEADERS,
        content: { 'text/plain': { schema: { type: 'string' } } },
      },
    },
  );
  paths['/openapi.json'] = operation(
    'openapi',
    'This document',
    'The OpenAPI 3.1 document of this API, as JSON; Swagger UI renders it at /docs. Compressed ' +
      'when the client accepts it.',
    {
      200: {
        description: 'The OpenAPI document.',
        headers: OPERATIONS_HEADERS,
        content: json({ type: 'object' }),
      },
    },
  );

  return {
    openapi: '3.1.0',
    info: {
      title: 'Microservices reference API',
      version: '1.0.0',
      description:
        'The public HTTP API of the reference system. Errors are RFC 9457 problem documents ' +
        '(application/problem+json). Every response carries `X-Request-Id` and the security headers ' +
        'of a JSON API (`Cache-Control: no-store`, `Content-Security-Policy`, ' +
        '`Strict-Transport-Security`, `X-Content-Type-Options`, `X-Frame-Options`, ' +
        '`Referrer-Policy`, `Cross-Origin-Resource-Policy`); answers under `/v1` carry the ' +
        '`RateLimit` headers while rate limiting is on.',
    },
    servers: [{ url: '/' }],
    tags: [
      ...TAGS,
      // The route groups `pnpm gen service` writes: one tag per service, named after it.
      ...[...new Set(routes.map((route) => route.tag))]
        .filter((tag) => !TAGS.some((known) => known.name === tag))
        .map((tag) => ({ name: tag, description: `The ${tag} service's items` })),
      { name: 'operations', description: 'Health, readiness, metrics and this document' },
    ],
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      headers: HEADERS,
      schemas: {
        Problem: jsonSchema(Problem, 'output'),
        ReadinessProblem: jsonSchema(ReadinessProblem, 'output'),
      },
    },
  };
}
