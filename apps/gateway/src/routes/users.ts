import { status } from '@grpc/grpc-js';
import { isServiceError } from '@repo/service-kit/errors';
import type { TokenService } from '../auth/tokens';
import { invalidToken } from '../auth/tokens';
import type { Backends } from '../backends';
import { defineRoute, type AnyRoute } from '../http/route';
import { presentUser } from './present';
import { CreateUserBody, IdempotencyHeaders, Token, TokenBody, User } from './schemas';

export function userRoutes(backends: Backends, tokens: TokenService): AnyRoute[] {
  return [
    defineRoute({
      operationId: 'createUser',
      method: 'post',
      path: '/v1/users',
      tag: 'users',
      summary: 'Register a user',
      description:
        'With an Idempotency-Key, a retry of the same request returns the user the first call created ' +
        '(for 24 hours); the same key with a different request is refused with 422. ' +
        'Answers 503 at once when password hashing is saturated (retry after Retry-After).',
      auth: false,
      body: CreateUserBody,
      headers: IdempotencyHeaders,
      status: 201,
      response: { description: 'The new user (never the password or its hash).', schema: User },
      errors: {
        409: 'A user with this email already exists, or a request with this Idempotency-Key is still in progress.',
        422: 'This Idempotency-Key was already used with a different request.',
      },
      handle: async ({ body, headers }) =>
        presentUser(
          (
            await backends.users.createUser({
              ...body,
              idempotencyKey: headers['idempotency-key'] ?? '',
            })
          ).user,
        ),
    }),
    defineRoute({
      operationId: 'createToken',
      method: 'post',
      path: '/v1/auth/token',
      tag: 'auth',
      summary: 'Exchange email and password for an access token',
      auth: false,
      body: TokenBody,
      status: 200,
      response: { description: 'A bearer access token (JWT).', schema: Token },
      errors: { 401: 'Wrong email or password (the same answer for both).' },
      handle: async ({ body }) => {
        const { user } = await backends.users.verifyCredentials(body);
        return tokens.issue(user!.id);
      },
    }),
    defineRoute({
      operationId: 'getCurrentUser',
      method: 'get',
      path: '/v1/users/me',
      tag: 'users',
      summary: 'The authenticated user',
      auth: true,
      status: 200,
      response: { description: 'The caller.', schema: User },
      handle: async ({ user }) => {
        try {
          return presentUser((await backends.users.getUser({ id: user.id })).user);
        } catch (error) {
          // A valid token for a user who has since been deleted no longer identifies anyone.
          if (isServiceError(error) && error.code === status.NOT_FOUND) {
            throw invalidToken('the user this token was issued to no longer exists');
          }
          throw error;
        }
      },
    }),
  ];
}
