import { status } from '@grpc/grpc-js';
import { isServiceError } from '@repo/service-kit/errors';
import type { TokenService } from '../auth/tokens';
import { invalidToken } from '../auth/tokens';
import type { Backends } from '../backends';
import { defineRoute, type AnyRoute } from '../http/route';
import { presentUser } from './present';
import { CreateUserBody, Token, TokenBody, User } from './schemas';

export function userRoutes(backends: Backends, tokens: TokenService): AnyRoute[] {
  return [
    defineRoute({
      operationId: 'createUser',
      method: 'post',
      path: '/v1/users',
      tag: 'users',
      summary: 'Register a user',
      auth: false,
      body: CreateUserBody,
      status: 201,
      response: { description: 'The new user (never the password or its hash).', schema: User },
      errors: { 409: 'A user with this email already exists.' },
      handle: async ({ body }) => presentUser((await backends.users.createUser(body)).user),
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
