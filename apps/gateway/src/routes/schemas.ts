import { z } from 'zod';
import { isStorableText, STORABLE_TEXT_RULE } from '@repo/service-kit/text';

/** Schemas of the public API. They validate requests and describe them in /openapi.json. */

const uuid = z.uuid({ error: 'must be a UUID' });

/** A UUID of any version, as the services accept them in ids (case-insensitive). */
const ANY_UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Length as people (and JSON Schema's minLength/maxLength) count it: code points, not UTF-16 units. */
const codePoints = (value: string): number => {
  let count = 0;
  for (const _ of value) count++;
  return count;
};

interface TextRules {
  /** At least one character that is not white space (the services trim, then require one). */
  required?: boolean;
  /** Code points. */
  minLength?: number;
  /** Code points. */
  maxLength: number;
  pattern?: { regex: RegExp; message: string };
  /** The JSON Schema `format`, for the document (`pattern` is what is checked). */
  format?: string;
  description?: string;
  example?: string;
}

/**
 * A string field whose rules are checked here *and* written into the OpenAPI document from the same
 * numbers, so a body the document allows is never refused for its shape. They are the owning
 * service's rules (same limits, same messages, one message per field), made no looser than the
 * document says: the service trims before it measures, the document and this check do not, so what
 * passes here passes there. Every string must also be text the system can store: no NUL (PostgreSQL
 * refuses it) and no unpaired surrogate (JSON's `\uD800` escape makes one; it is not Unicode and
 * would be stored as U+FFFD); the services refuse both too, for gRPC callers.
 */
export const text = (rules: TextRules) => {
  const check = (value: string): string | undefined => {
    if (!isStorableText(value)) return STORABLE_TEXT_RULE;
    if (rules.required && !/\S/.test(value)) return 'is required';
    const length = codePoints(value);
    if (rules.minLength !== undefined && length < rules.minLength)
      return `must be at least ${rules.minLength} characters`;
    if (length > rules.maxLength) return `must be at most ${rules.maxLength} characters`;
    if (rules.pattern && !rules.pattern.regex.test(value)) return rules.pattern.message;
    return undefined;
  };
  return z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .superRefine((value, context) => {
      const message = check(value);
      if (message) context.addIssue({ code: 'custom', message });
    })
    .meta({
      ...(rules.description ? { description: rules.description } : {}),
      minLength: rules.minLength ?? (rules.required ? 1 : 0),
      maxLength: rules.maxLength,
      // "Contains a non-space character" and the format pattern: two patterns need an allOf.
      ...(rules.required && !rules.pattern ? { pattern: '\\S' } : {}),
      ...(rules.pattern ? { pattern: rules.pattern.regex.source } : {}),
      ...(rules.format ? { format: rules.format } : {}),
      // No NUL; unpaired surrogates cannot be written as a JSON Schema pattern portably.
      not: { pattern: '\\u0000' },
      ...(rules.example ? { example: rules.example } : {}),
    });
};

/**
 * Ids are checked for size and storable text here; the owning service refuses anything but a UUID
 * (400 naming `id`), which the document says with `pattern`.
 */
export const IdParams = z.object({
  id: z
    .string()
    .min(1)
    .max(64)
    .refine(isStorableText, STORABLE_TEXT_RULE)
    .meta({ description: 'A UUID.', format: 'uuid', pattern: ANY_UUID.source }),
});

export const PageQuery = z.object({
  pageSize: z.coerce
    .number({ error: 'must be a number' })
    .int('must be an integer')
    .min(1, 'must be between 1 and 100')
    .max(100, 'must be between 1 and 100')
    .optional()
    .meta({ description: 'Items per page, 1 to 100 (default 20).' }),
  pageToken: text({
    maxLength: 512,
    description: 'The `nextPageToken` of the previous page, as it was returned.',
  }).optional(),
});

/** The user service's rules (apps/user/src/domain/validation.ts). */
const EMAIL_PATTERN = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

export const CreateUserBody = z.strictObject({
  email: text({
    required: true,
    maxLength: 254,
    pattern: { regex: EMAIL_PATTERN, message: 'must be an email address' },
    format: 'email',
    description: 'Unique, compared case-insensitively (and in Unicode NFC).',
    example: 'ada@example.com',
  }),
  name: text({ required: true, maxLength: 100, example: 'Ada Lovelace' }),
  password: text({ minLength: 12, maxLength: 256, example: 'correct horse battery staple' }),
});

export const TokenBody = z.strictObject({
  email: text({ maxLength: 1000 }),
  password: text({ maxLength: 1000 }),
});

export const CreateOrderBody = z.strictObject({
  items: z
    .array(
      z.strictObject({
        productId: uuid,
        quantity: z
          .number({ error: 'must be a number' })
          .int('must be an integer')
          .min(1, 'must be between 1 and 1000')
          .max(1000, 'must be between 1 and 1000'),
      }),
    )
    .min(1, 'must hold at least one item')
    .max(50, 'must hold at most 50 items')
    .meta({
      description:
        'Lines naming the same product are merged; their quantities must add up to at most 1000.',
    }),
});

export const IdempotencyHeaders = z.object({
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,100}$/, 'must be 1 to 100 printable ASCII characters without spaces')
    .optional()
    .meta({
      description:
        'Makes the request safe to retry: the same key with the same request returns the first result for 24 hours.',
    }),
});

export const User = z.object({
  id: uuid,
  email: z.string(),
  name: z.string(),
  createdAt: z.iso.datetime(),
});

export const Token = z.object({
  accessToken: z.string(),
  tokenType: z.literal('Bearer'),
  expiresIn: z.number().int().meta({ description: 'Seconds until the token expires.' }),
});

export const Product = z.object({
  id: uuid,
  sku: z.string(),
  name: z.string(),
  priceCents: z.number().int(),
  currency: z.string().length(3),
  stock: z.number().int(),
});

export const ProductList = z.object({
  products: z.array(Product),
  nextPageToken: z.string().nullable(),
});

export const OrderStatus = z.enum(['PENDING', 'CONFIRMED', 'CANCELLED']);

export const Order = z.object({
  id: uuid,
  userId: uuid,
  status: OrderStatus,
  items: z.array(
    z.object({
      productId: uuid,
      sku: z.string(),
      name: z.string(),
      quantity: z.number().int(),
      unitPriceCents: z.number().int(),
    }),
  ),
  totalCents: z.number().int(),
  currency: z.string().length(3),
  createdAt: z.iso.datetime(),
});

export const OrderList = z.object({ orders: z.array(Order), nextPageToken: z.string().nullable() });

/** The body of `GET /v1/orders/events`, for the document: SSE text, described, not validated. */
export const OrderEventStream = z.string().meta({
  description:
    'Frames separated by a blank line. `order.placed` data: `orderId`, `status` (PENDING or ' +
    'CONFIRMED), `totalCents`, `currency`, `items` (as in an Order), `occurredAt`. ' +
    '`order.cancelled` data: `orderId`, `status` (CANCELLED), `reason` (USER_REQUESTED or ' +
    'USER_DELETED), `previousStatus`, `occurredAt`. Lines starting with `:` are comments ' +
    '(heartbeats).',
  example:
    'retry: 3000\n: connected\n\n' +
    'id: 5f0c6b1e-8a0f-4c57-9d1e-2b7c3a4d5e6f\nevent: order.placed\n' +
    'data: {"orderId":"0b7d3e4a-1c2f-4a5b-8c6d-00000000000a","status":"CONFIRMED",' +
    '"totalCents":2500,"currency":"EUR","items":[],"occurredAt":"2026-01-01T12:00:00.000Z"}\n\n' +
    ': heartbeat\n\n',
});

export const Problem = z
  .object({
    type: z.string().meta({
      format: 'uri-reference',
      description: 'Names the kind of problem, e.g. `/problems/validation-error`.',
    }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().meta({ description: 'What went wrong, with field names as in `errors`.' }),
    errors: z
      .array(
        z.object({
          field: z.string().meta({
            description:
              'The field as the request names it: `items[1].productId`, `pageSize`, `idempotency-key`.',
          }),
          message: z.string(),
        }),
      )
      .optional()
      .meta({ description: 'Each bad field, on validation errors.' }),
  })
  .meta({ description: 'RFC 9457 problem details.' });

/** The 503 of /readyz: a problem document that also says which backend is not serving. */
export const ReadinessProblem = Problem.extend({
  checks: z
    .record(z.string(), z.string())
    .meta({ description: 'Each backend service and its health state.' }),
});

export const Liveness = z.object({ status: z.literal('ok') });

export const Readiness = z.object({
  status: z.literal('ready'),
  checks: z
    .record(z.string(), z.string())
    .meta({ description: 'Each backend service and its health state (`SERVING`).' }),
});
