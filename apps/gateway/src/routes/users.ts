import { status } from '@grpc/grpc-js';
import { isServiceError } from '@repo/service-kit/errors';
import type { TokenService } from '../auth/tokens';
import { invalidToken } from '../auth/tokens';
import type { Backends } from '../backends';
import { HttpError, PROBLEM_TYPES } from '../http/problem';
import { defineRoute, type AnyRoute } from '../http/route';
import { presentUser } from './present';
import { CreateUserBody, IdParams, IdempotencyHeaders, Token, TokenBody, User } from './schemas';

export function userRoutes(backends: Backends, tokens: TokenService): AnyRoute[] {
  /** Calls the user service about the caller's own account. */
  const asCaller = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      // A valid token for a user who has since been deleted no longer identifies anyone.
      if (isServiceError(error) && error.code === status.NOT_FOUND) {
        throw invalidToken('the user this token was issued to no longer exists');
      }
      throw error;
    }
  };
  /** The authenticated caller's account. */
  const currentUser = async (id: string) =>
    asCaller(async () => presentUser((await backends.users.getUser({ id })).user));
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
      location: '/v1/users/{id}',
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
      description:
        'Issues a bearer access token (a JWT) for the account. A wrong password and an unknown email ' +
        'get the same 401, in about the same time.',
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
      description: 'The account the access token was issued to.',
      auth: true,
      status: 200,
      response: { description: 'The caller.', schema: User },
      handle: async ({ user }) => currentUser(user.id),
    }),
    defineRoute({
      operationId: 'deleteCurrentUser',
      method: 'delete',
      path: '/v1/users/me',
      tag: 'users',
      summary: 'Delete the authenticated user',
      description:
        'Deletes the account the access token was issued to. Access tokens are stateless and not ' +
        'revoked (they expire after their lifetime), but the account is gone: its routes answer 401 ' +
        "and new orders are refused (409). The user's open orders are cancelled and their stock " +
        'returned, asynchronously (the order service acts on the `user.v1.UserDeleted` event, once).',
      auth: true,
      status: 204,
      response: { description: 'Deleted.' },
      handle: async ({ user }) => {
        await asCaller(() => backends.users.deleteUser({ id: user.id }));
      },
    }),
    defineRoute({
      operationId: 'getUser',
      method: 'get',
      path: '/v1/users/:id',
      tag: 'users',
      summary: 'A user, by id',
      description:
        'The URI a registration answers with in `Location`. Callers can read only their own account: ' +
        "another user's id is 404, as an unknown one is.",
      auth: true,
      params: IdParams,
      status: 200,
      response: { description: 'The user.', schema: User },
      errors: { 404: "No such user (also for another user's id)." },
      handle: async ({ params, user }) => {
        if (params.id.toLowerCase() !== user.id.toLowerCase()) {
          throw new HttpError(404, PROBLEM_TYPES.notFound, 'no such user');
        }
        return currentUser(user.id);
      },
    }),
  ];
}
