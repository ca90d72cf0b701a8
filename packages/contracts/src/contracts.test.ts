import { readFileSync } from 'node:fs';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { fromBinary } from '@bufbuild/protobuf';
import { descriptorSetPath } from './descriptor';
import { CreateOrderRequest, OrderStatus, OrderServiceService } from './generated/order/v1/order';
import { User, UserServiceService } from './generated/user/v1/user';

describe('generated contracts', () => {
  it('round-trips a message through the protobuf wire format', () => {
    const user = {
      id: 'f1c3',
      email: 'Ada@Example.com',
      name: 'Ada',
      createTime: new Date('2026-01-02T03:04:05.678Z'),
      updateTime: undefined,
    };
    expect(User.decode(User.encode(user).finish())).toEqual(user);
    const order = { userId: 'u', items: [{ productId: 'p', quantity: 3 }], idempotencyKey: 'k' };
    expect(CreateOrderRequest.decode(CreateOrderRequest.encode(order).finish())).toEqual(order);
  });

  it('exposes the grpc-js service definitions with their full method paths', () => {
    expect(UserServiceService.createUser.path).toBe('/user.v1.UserService/CreateUser');
    expect(OrderServiceService.cancelOrder.path).toBe('/order.v1.OrderService/CancelOrder');
    expect(OrderStatus.ORDER_STATUS_UNSPECIFIED).toBe(0);
  });

  it('ships a descriptor set describing both services (for reflection)', () => {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath));
    const services = set.file.flatMap((file) =>
      file.service.map((service) => `${file.package}.${service.name}`),
    );
    expect(services.sort()).toEqual([
      'grpc.health.v1.Health',
      'order.v1.OrderService',
      'user.v1.UserService',
    ]);
  });
});
