import type { EventRef, OrderRepository, UserDirectory } from './ports';
import { CANCELLABLE } from './status';

/**
 * The order service's own knowledge of users, kept from the user service's events, so that placing
 * an order does not need the user service to be up:
 *
 * - a user whose UserRegistered was applied is known here, and asked nowhere else;
 * - a user whose UserDeleted was applied does not exist, whatever anyone says;
 * - a user never heard of (registered a moment ago, its event on its way) is asked of the user
 *   service (`remote`), so a client that registers and orders at once is served (read-your-writes);
 *   placing the order then remembers the user.
 */
export class KnownUsers implements UserDirectory {
  constructor(
    private readonly repository: OrderRepository,
    private readonly remote: UserDirectory,
  ) {}

  async userExists(userId: string): Promise<boolean> {
    switch (await this.repository.knownUserStatus(userId)) {
      case 'active':
        return true;
      case 'deleted':
        return false;
      default:
        return this.remote.userExists(userId);
    }
  }

  /** UserRegistered. */
  registered(event: EventRef, userId: string, registeredAt: Date): Promise<boolean> {
    return this.repository.recordUserRegistered(event, userId, registeredAt);
  }

  /** UserDeleted: the user's open orders are cancelled and their stock returned, once. */
  deleted(event: EventRef, userId: string, deletedAt: Date): Promise<string[] | undefined> {
    return this.repository.recordUserDeleted(event, userId, deletedAt, CANCELLABLE);
  }
}
