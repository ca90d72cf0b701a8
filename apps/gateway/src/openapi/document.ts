import { z } from 'zod';
import type { AnyRoute } from '../http/route';
import { PROBLEM_CONTENT_TYPE } from '../http/problem';
import { Problem, Readiness } from '../routes/schemas';

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

const problemResponse = (description: string) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } },
});

/**
 * OpenAPI 3.1 for the API, generated from the same route specs and zod schemas that validate
 * requests (see src/http/route.ts). JSON Schema 2020-12 is OpenAPI 3.1's schema dialect.
 */
export function buildOpenApiDocument(routes: readonly AnyRoute[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:([A-Za-z]+)/g, '{$1}');
    const responses: Record<string, unknown> = {
      [route.status]: {
        description: route.response.description,
        ...(route.response.schema
          ? {
              content: {
                'application/json': { schema: jsonSchema(route.response.schema, 'output') },
              },
            }
          : {}),
      },
      400: problemResponse('The request is invalid; `errors` names each bad field.'),
      ...(route.auth ? { 401: problemResponse('Missing, invalid or expired access token.') } : {}),
      ...Object.fromEntries(
        Object.entries(route.errors ?? {}).map(([code, text]) => [code, problemResponse(text)]),
      ),
      ...(route.body
        ? {
            413: problemResponse('The body is too large.'),
            415: problemResponse('The body is not JSON.'),
          }
        : {}),
      429: problemResponse('Too many requests from this client; see Retry-After.'),
      503: problemResponse('A backend service is unavailable; see Retry-After.'),
      504: problemResponse('A backend service did not answer in time.'),
    };
    paths[path] ??= {};
    paths[path][route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      tags: [route.tag],
      ...(route.auth ? { security: [{ bearerAuth: [] }] } : {}),
      parameters: [
        ...parameters(route.params, 'path'),
        ...parameters(route.query, 'query'),
        ...parameters(route.headers, 'header'),
      ],
      ...(route.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(route.body, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }

  paths['/healthz'] = {
    get: {
      operationId: 'liveness',
      summary: 'The process is up',
      tags: ['operations'],
      responses: {
        200: {
          description: 'Alive.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      },
    },
  };
  paths['/readyz'] = {
    get: {
      operationId: 'readiness',
      summary: 'Both backend services answer health checks SERVING',
      tags: ['operations'],
      responses: {
        200: {
          description: 'Ready.',
          content: { 'application/json': { schema: jsonSchema(Readiness, 'output') } },
        },
        503: problemResponse('Not ready; `checks` says which service is not serving.'),
      },
    },
  };
  paths['/metrics'] = {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      tags: ['operations'],
      responses: {
        200: {
          description: 'Prometheus text format.',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
      },
    },
  };

  return {
    openapi: '3.1.0',
    info: {
      title: 'Microservices reference API',
      version: '1.0.0',
      description:
        'The public HTTP API of the reference system. Errors are RFC 9457 problem documents (application/problem+json). ' +
        'Every response carries X-Request-Id.',
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'users', description: 'Accounts' },
      { name: 'auth', description: 'Access tokens' },
      { name: 'catalog', description: 'Products' },
      { name: 'orders', description: "The caller's orders" },
      { name: 'operations', description: 'Health, readiness and metrics' },
    ],
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Problem: jsonSchema(Problem, 'output') },
    },
  };
}
