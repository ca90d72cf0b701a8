import { readFileSync } from 'node:fs';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { fromBinary } from '@bufbuild/protobuf';
import { descriptorSetPath } from './descriptor';
import { CreateOrderRequest, OrderStatus, OrderServiceService } from './generated/order/v1/order';
import { User, UserServiceService } from './generated/user/v1/user';
import { Envelope } from './generated/events/v1/envelope';
import { UserRegistered } from './generated/user/v1/events';
import { CancellationReason, OrderCancelled } from './generated/order/v1/events';

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

  it('round-trips an event in its envelope', () => {
    const payload = UserRegistered.encode({ userId: 'u1', email: 'a@b.c', name: 'Ada' }).finish();
    const envelope = {
      id: 'e1',
      type: 'user.v1.UserRegistered',
      aggregateId: 'u1',
      occurredAt: new Date('2026-01-02T03:04:05.678Z'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: '',
      payload: Buffer.from(payload),
      source: 'user',
      sequence: 3,
    };
    const decoded = Envelope.decode(Envelope.encode(envelope).finish());
    expect(decoded).toEqual(envelope);
    expect(UserRegistered.decode(decoded.payload).email).toBe('a@b.c');
    const cancelled = {
      orderId: 'o',
      userId: 'u',
      reason: CancellationReason.CANCELLATION_REASON_USER_DELETED,
      previousStatus: OrderStatus.ORDER_STATUS_PENDING,
    };
    expect(OrderCancelled.decode(OrderCancelled.encode(cancelled).finish())).toEqual(cancelled);
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
