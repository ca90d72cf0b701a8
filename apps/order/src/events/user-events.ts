// The order service's consumer of the user service's events: it keeps the projection of users
// (domain/known-users.ts) from UserRegistered and UserDeleted.
import { UserDeleted, UserRegistered } from '@repo/contracts/user/v1/events';
import type { ConsumerSpec } from '@repo/events/service';
import { EventTypes } from '@repo/events/subjects';
import { withEventContext } from '@repo/service-kit/event-context';
import { isUuid } from '@repo/service-kit/ids';
import type { Logger } from '@repo/service-kit/logger';
import type { KnownUsers } from '../domain/known-users';

/** The durable consumer's name: its inbox rows and its dead letters go by it. */
export const USER_EVENTS_CONSUMER = 'order-users';

/** An event that can never be applied: thrown, it is retried and then dead-lettered. */
function invalid(type: string, why: string): Error {
  return new Error(`${type}: ${why}`);
}

function userIdOf(type: string, userId: string): string {
  if (!isUuid(userId)) throw invalid(type, `user_id "${userId}" is not a UUID`);
  return userId.toLowerCase();
}

export function userEventsConsumer(knownUsers: KnownUsers, logger: Logger): ConsumerSpec {
  return {
    consumer: USER_EVENTS_CONSUMER,
    types: [EventTypes.UserRegistered, EventTypes.UserDeleted],
    handler: ({ envelope }) =>
      withEventContext(envelope, async () => {
        const event = { consumer: USER_EVENTS_CONSUMER, eventId: envelope.id };
        const at = envelope.occurredAt ?? new Date();
        switch (envelope.type) {
          case EventTypes.UserRegistered: {
            const { userId } = UserRegistered.decode(envelope.payload);
            await knownUsers.registered(event, userIdOf(envelope.type, userId), at);
            break;
          }
          case EventTypes.UserDeleted: {
            const { userId } = UserDeleted.decode(envelope.payload);
            const cancelled = await knownUsers.deleted(event, userIdOf(envelope.type, userId), at);
            if (cancelled?.length) {
              logger.info({ userId, orders: cancelled }, 'user deleted: open orders cancelled');
            }
            break;
          }
          default:
            throw invalid(envelope.type, 'not an event this consumer handles');
        }
        // One line per event handled, as the gRPC server writes one per call: at debug, it finds
        // the event (its id is the line's requestId) and its trace.
        logger.debug({ consumer: USER_EVENTS_CONSUMER, type: envelope.type }, 'event handled');
      }),
  };
}
