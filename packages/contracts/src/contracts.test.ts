import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { fromBinary } from '@bufbuild/protobuf';
import { descriptorSetPath } from './descriptor';
import { CreateOrderRequest, OrderStatus, OrderServiceService } from './generated/order/v1/order';
import { User, UserServiceService } from './generated/user/v1/user';
import { Envelope } from './generated/events/v1/envelope';
import { UserRegistered } from './generated/user/v1/events';
import { CancellationReason, OrderCancelled } from './generated/order/v1/events';

/**
 * The gRPC services the apps declare in their manifests (apps/*\/package.json's
 * `service.grpcService`; read here directly: @repo/system, which reads them, depends on this package).
 */
function declaredServices(): string[] {
  const apps = join(__dirname, '..', '..', '..', 'apps');
  return readdirSync(apps).flatMap((app) => {
    const file = join(apps, app, 'package.json');
    if (!existsSync(file)) return [];
    const json = JSON.parse(readFileSync(file, 'utf8')) as { service?: { grpcService?: string } };
    return json.service?.grpcService ? [json.service.grpcService] : [];
  });
}

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

  it("ships a descriptor set describing every app's service (for reflection) and gRPC health", () => {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath));
    const services = set.file.flatMap((file) =>
      file.service.map((service) => `${file.package}.${service.name}`),
    );
    expect(declaredServices()).toEqual(
      expect.arrayContaining(['order.v1.OrderService', 'user.v1.UserService']),
    );
    expect(services.sort()).toEqual(['grpc.health.v1.Health', ...declaredServices()].sort());
  });
});
