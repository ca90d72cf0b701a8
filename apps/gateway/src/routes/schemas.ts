import { z } from 'zod';
import { isStorableText, STORABLE_TEXT_RULE } from '@repo/service-kit/text';

/** Schemas of the public API. They validate requests and describe them in /openapi.json. */

const uuid = z.uuid({ error: 'must be a UUID' });

/**
 * A string field. The gateway checks shape, gross size and that it is text the system can store:
 * no NUL (PostgreSQL refuses it) and no unpaired surrogate (JSON's `\uD800` escape makes one; it is
 * not Unicode and would be stored as U+FFFD). The owning service applies the domain rules (email
 * format, name and password lengths; it refuses NUL and unpaired surrogates too, for gRPC callers)
 * and its field violations come back in the same `errors` list.
 */
const text = (max: number) =>
  z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .max(max, 'is too long')
    .refine(isStorableText, STORABLE_TEXT_RULE);

export const IdParams = z.object({
  id: z.string().min(1).max(64).refine(isStorableText, STORABLE_TEXT_RULE),
});

export const PageQuery = z.object({
  pageSize: z.coerce
    .number({ error: 'must be a number' })
    .int('must be an integer')
    .min(1, 'must be between 1 and 100')
    .max(100, 'must be between 1 and 100')
    .optional()
    .meta({ description: 'Items per page, 1 to 100 (default 20).' }),
  pageToken: z
    .string()
    .max(512, 'is too long')
    .refine(isStorableText, STORABLE_TEXT_RULE)
    .optional()
    .meta({ description: 'The `nextPageToken` of the previous page.' }),
});

export const CreateUserBody = z.strictObject({
  email: text(1000).meta({ example: 'ada@example.com' }),
  name: text(1000).meta({ description: '1 to 100 characters.', example: 'Ada Lovelace' }),
  password: text(1000).meta({
    description: '12 to 256 characters.',
    example: 'correct horse battery staple',
  }),
});

export const TokenBody = z.strictObject({
  email: text(1000),
  password: text(1000),
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
    .max(50, 'must hold at most 50 items'),
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

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  })
  .meta({ description: 'RFC 9457 problem details.' });

export const Readiness = z.object({
  status: z.enum(['ready', 'not ready']),
  checks: z.record(z.string(), z.string()),
});
