// The order service's consumer of the user service's events: it keeps the projection of users
// (domain/known-users.ts) from UserRegistered and UserDeleted.
import { UserDeleted, UserRegistered } from '@repo/contracts/user/v1/events';
import type { ConsumerSpec } from '@repo/events/service';
import { EventTypes } from '@repo/events/subjects';
import { errorMessage, permanentError } from '@repo/events/transport';
import { withEventContext } from '@repo/service-kit/event-context';
import { isUuid } from '@repo/service-kit/ids';
import type { Logger } from '@repo/service-kit/logger';
import type { KnownUsers } from '../domain/known-users';

/** The durable consumer's name: its inbox rows and its dead letters go by it. */
export const USER_EVENTS_CONSUMER = 'order-users';

/**
 * An event that can never be applied: thrown as permanent, it is dead-lettered at once (retrying
 * would only hold back the user's later events). Any other error (the database away) is retried.
 */
function invalid(type: string, why: string, cause?: unknown): Error {
  return permanentError(`${type}: ${why}`, cause);
}

/** The message's decoding, a payload that is not one being permanent. */
function decode<T>(
  type: string,
  decoder: { decode(input: Uint8Array): T },
  payload: Uint8Array,
): T {
  try {
    return decoder.decode(payload);
  } catch (error) {
    throw invalid(type, `undecodable payload (${errorMessage(error)})`, error);
  }
}

function userIdOf(type: string, userId: string): string {
  if (!isUuid(userId)) throw invalid(type, `user_id "${userId}" is not a UUID`);
  return userId.toLowerCase();
}

export function userEventsConsumer(knownUsers: KnownUsers, logger: Logger): ConsumerSpec {
  return {
    consumer: USER_EVENTS_CONSUMER,
    types: [EventTypes.UserRegistered, EventTypes.UserDeleted],
    // A transient failure (the order database restarting, for a few seconds or a minute) is
    // retried for 2 to 4 minutes (backoff 1 s doubling to 60 s, jittered, over 10 attempts) before
    // the event is parked: with the default 5 attempts over ~8 s, a 20 s restart dead-lettered
    // user events, and their effects (UserDeleted cancelling orders) waited for a manual replay.
    options: { maxAttempts: 10, backoff: { initialMs: 1000, maxMs: 60_000 } },
    handler: ({ envelope }) =>
      withEventContext(envelope, async () => {
        const event = { consumer: USER_EVENTS_CONSUMER, eventId: envelope.id };
        const at = envelope.occurredAt ?? new Date();
        switch (envelope.type) {
          case EventTypes.UserRegistered: {
            const { userId } = decode(envelope.type, UserRegistered, envelope.payload);
            await knownUsers.registered(event, userIdOf(envelope.type, userId), at);
            break;
          }
          case EventTypes.UserDeleted: {
            const { userId } = decode(envelope.type, UserDeleted, envelope.payload);
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
