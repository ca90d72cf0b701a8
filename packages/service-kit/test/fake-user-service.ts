import { UserServiceService, type UserServiceServer } from '@repo/contracts/user/v1';
import {
  createGrpcServer,
  unaryService,
  type GrpcServer,
  type UnaryHandlers,
  type UnaryServiceOptions,
} from '../src/grpc-server';
import { createLogger } from '../src/logger';

const logger = createLogger({ name: 'test', level: 'silent', pretty: false });

const notUsed = () => Promise.reject(new Error('not used by this test'));

/**
 * A server (not listening) for `user.v1.UserService` with the handlers a test gives; every other
 * method rejects. The tests of service-kit's server and client use it as their service under test.
 */
export function fakeUserServer(
  handlers: Partial<UnaryHandlers<UserServiceServer>>,
  options: Omit<UnaryServiceOptions, 'logger'> = {},
): GrpcServer {
  return createGrpcServer({
    logger,
    services: [
      {
        name: 'user.v1.UserService',
        definition: UserServiceService,
        implementation: unaryService<UserServiceServer>(
          'user.v1.UserService',
          {
            getUser: notUsed,
            createUser: notUsed,
            batchGetUsers: notUsed,
            listUsers: notUsed,
            updateUser: notUsed,
            deleteUser: notUsed,
            verifyCredentials: notUsed,
            ...handlers,
          },
          { logger, ...options },
        ),
      },
    ],
  });
}
