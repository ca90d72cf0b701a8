import { status } from '@grpc/grpc-js';
import type { UserServiceClient } from '@repo/contracts/user/v1';
import { DomainError, isServiceError } from '@repo/service-kit/errors';
import type { ServiceClient } from '@repo/service-kit/grpc-client';
import type { UserDirectory } from '../domain/ports';

type UserClient = ServiceClient<UserServiceClient, 'getUser'>;

/**
 * UserDirectory over gRPC: asks UserService.GetUser, under the client's deadline. NOT_FOUND means
 * "no such user"; any other failure (down, slow, overloaded) means "cannot tell right now" and
 * becomes UNAVAILABLE, so CreateOrder fails fast instead of hanging or guessing.
 */
export class GrpcUserDirectory implements UserDirectory {
  constructor(private readonly client: UserClient) {}

  async userExists(userId: string): Promise<boolean> {
    try {
      await this.client.getUser({ id: userId });
      return true;
    } catch (error) {
      if (isServiceError(error) && error.code === status.NOT_FOUND) return false;
      const code = isServiceError(error) ? status[error.code] : 'UNKNOWN';
      throw new DomainError(
        'UNAVAILABLE',
        `the user service is unavailable (${code}); retry later`,
        [],
        { cause: error },
      );
    }
  }
}
