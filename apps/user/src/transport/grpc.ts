import type { User as ProtoUser, UserServiceServer } from '@repo/contracts/user/v1';
import type { UnaryHandlers } from '@repo/service-kit/grpc-server';
import type { User } from '../domain/user';
import type { Users } from '../domain/users';

/** Domain user -> wire user. The only place that knows both shapes. */
export function toProtoUser(user: User): ProtoUser {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    createTime: user.createdAt,
    updateTime: user.updatedAt,
  };
}

/** user.v1.UserService: translation between the wire and the domain, nothing else. */
export function userServiceHandlers(users: Users): UnaryHandlers<UserServiceServer> {
  return {
    createUser: async (request) => ({ user: toProtoUser(await users.create(request)) }),
    getUser: async (request) => ({ user: toProtoUser(await users.get(request.id)) }),
    batchGetUsers: async (request) => ({
      users: (await users.batchGet(request.ids)).map(toProtoUser),
    }),
    listUsers: async (request) => {
      const page = await users.list(request.pageSize, request.pageToken);
      return { users: page.users.map(toProtoUser), nextPageToken: page.nextPageToken };
    },
    updateUser: async (request) => ({
      user: toProtoUser(await users.updateName(request.id, request.name)),
    }),
    deleteUser: async (request) => {
      await users.delete(request.id);
      return {};
    },
    verifyCredentials: async (request) => ({
      user: toProtoUser(await users.verifyCredentials(request.email, request.password)),
    }),
  };
}
