/**
 * Every event type of the system and the subject it travels on, named here and nowhere else.
 *
 * A subject is `events.<protobuf full name of the payload>`, e.g. `events.user.v1.UserRegistered`:
 * NATS subjects and the PostgreSQL transport's `subject` column use the same string, so a consumer
 * subscribes to the same names whatever carries them. The version is in the name (`v1`): a breaking
 * change to an event is a new type (`user.v2.UserRegistered`) published beside the old one.
 */

/** The prefix of every event subject; JetStream's stream captures `events.>`. */
export const EVENTS_PREFIX = 'events';

/** The fully-qualified protobuf names of the event payloads (the envelope's `type`). */
export const EventTypes = {
  UserRegistered: 'user.v1.UserRegistered',
  UserDeleted: 'user.v1.UserDeleted',
  OrderPlaced: 'order.v1.OrderPlaced',
  OrderCancelled: 'order.v1.OrderCancelled',
} as const;

export type EventType = (typeof EventTypes)[keyof typeof EventTypes];

/** The subject an event of `type` is published on (`prefix` only differs in tests). */
export function subjectOf(type: string, prefix: string = EVENTS_PREFIX): string {
  if (!/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+$/.test(type)) {
    throw new Error(`"${type}" is not a protobuf full name (package.Message)`);
  }
  return `${prefix}.${type}`;
}

/** The subjects of the system's events, by type name. */
export const Subjects = {
  UserRegistered: subjectOf(EventTypes.UserRegistered),
  UserDeleted: subjectOf(EventTypes.UserDeleted),
  OrderPlaced: subjectOf(EventTypes.OrderPlaced),
  OrderCancelled: subjectOf(EventTypes.OrderCancelled),
} as const;
