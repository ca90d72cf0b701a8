import { decodeEnvelope, encodeEnvelope, newEnvelope } from '../src/envelope';
import { EventTypes, Subjects, subjectOf } from '../src/subjects';
import { backoffMs, checkConsumerName } from '../src/transport';

describe('subjects', () => {
  it('names each event type once, as events.<protobuf full name>', () => {
    expect(Subjects).toEqual({
      UserRegistered: 'events.user.v1.UserRegistered',
      UserDeleted: 'events.user.v1.UserDeleted',
      OrderPlaced: 'events.order.v1.OrderPlaced',
      OrderCancelled: 'events.order.v1.OrderCancelled',
    });
    expect(subjectOf(EventTypes.OrderPlaced, 't1')).toBe('t1.order.v1.OrderPlaced');
  });

  it('refuses a type that is not a protobuf full name (it would be a wildcard or no subject)', () => {
    for (const bad of ['', 'UserRegistered', 'user.v1.*', 'user.v1.>', 'user..v1']) {
      expect(() => subjectOf(bad)).toThrow(/not a protobuf full name/);
    }
  });
});

describe('envelope', () => {
  it('fills in a new id and the time, and survives the wire', () => {
    const envelope = newEnvelope({
      type: EventTypes.UserRegistered,
      aggregateId: 'u1',
      payload: Buffer.from('x'),
      source: 'user',
    });
    expect(envelope.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(envelope.occurredAt).toBeInstanceOf(Date);
    expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
  });
});

describe('backoff', () => {
  it('doubles from initialMs up to maxMs, jittered within the upper half', () => {
    const options = { initialMs: 100, maxMs: 1000 };
    expect([1, 2, 3, 4, 5].map((attempt) => backoffMs(attempt, options, () => 1))).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(backoffMs(3, options, () => 0)).toBe(200);
  });
});

describe('consumer names', () => {
  it('accepts durable-name-safe names only', () => {
    expect(() => checkConsumerName('order-user-projection_1')).not.toThrow();
    for (const bad of ['', 'a.b', 'a b', 'a*', 'x'.repeat(65)]) {
      expect(() => checkConsumerName(bad)).toThrow(/consumer name/);
    }
  });
});
