import { experimental } from '@grpc/grpc-js';

type Picker = experimental.Picker;
type PickArgs = experimental.PickArgs;
type PickResult = experimental.PickResult;
type LoadBalancer = experimental.LoadBalancer;
type ChannelControlHelper = experimental.ChannelControlHelper;
type TypedLoadBalancingConfig = experimental.TypedLoadBalancingConfig;
const {
  ChildLoadBalancerHandler,
  PickResultType,
  createChildChannelControlHelper,
  registerLoadBalancerType,
  selectLbConfigFromList,
} = experimental;

/** The name of the policy below in a service config. */
export const AVOID_PEER_POLICY = 'avoid_failed_peer';

/**
 * Metadata a retry carries, once per replica its earlier attempts failed on: that replica's
 * address. (It reaches the server too, as a harmless extra header: it tells which replicas a
 * retry left.)
 */
export const AVOID_PEER_KEY = 'x-retry-avoid-peer';

/**
 * A retry must go to a replica the call has not failed on yet. grpc-js's round_robin takes the
 * next ready replica in turn, but calls from everywhere take turns too: with one replica of two
 * hung, a retry would land on it again half the time, each time costing a whole attempt timeout,
 * until outlier detection ejects it. And a third attempt that avoided only the second's replica
 * could go back to the first's (Envoy's `previous_hosts` retry predicate avoids them all, too).
 * This picker asks its child (round_robin) again, up to once per replica, while the pick is one
 * the call's AVOID_PEER_KEY names. When every replica is named, the last pick stands.
 */
class AvoidPeerPicker implements Picker {
  constructor(
    private readonly child: Picker,
    private readonly replicas: number,
  ) {}

  pick(args: PickArgs): PickResult {
    let result = this.child.pick(args);
    const avoid = args.metadata.get(AVOID_PEER_KEY);
    if (avoid.length === 0) return result;
    for (let tries = 1; tries < this.replicas && isOneOf(result, avoid); tries++) {
      result = this.child.pick(args);
    }
    return result;
  }
}

function isOneOf(result: PickResult, peers: readonly unknown[]): boolean {
  return (
    result.pickResultType === PickResultType.COMPLETE &&
    peers.includes(result.subchannel?.getAddress())
  );
}

class AvoidPeerConfig implements TypedLoadBalancingConfig {
  constructor(readonly child: TypedLoadBalancingConfig) {}

  getLoadBalancerName(): string {
    return AVOID_PEER_POLICY;
  }

  toJsonObject(): object {
    return { [AVOID_PEER_POLICY]: { child_policy: [this.child.toJsonObject()] } };
  }

  static createFromJson(json: { child_policy?: unknown }): AvoidPeerConfig {
    const child = Array.isArray(json.child_policy)
      ? selectLbConfigFromList(json.child_policy as never[])
      : null;
    if (!child) throw new Error(`${AVOID_PEER_POLICY}: child_policy names no known policy`);
    return new AvoidPeerConfig(child);
  }
}

/** Delegates everything to its child policy and wraps each picker it hands up in AvoidPeerPicker. */
class AvoidPeerLoadBalancer implements LoadBalancer {
  private readonly child: InstanceType<typeof ChildLoadBalancerHandler>;
  private replicas = 1;

  constructor(helper: ChannelControlHelper) {
    this.child = new ChildLoadBalancerHandler(
      createChildChannelControlHelper(helper, {
        updateState: (state, picker, errorMessage) =>
          helper.updateState(state, new AvoidPeerPicker(picker, this.replicas), errorMessage),
      }),
    );
  }

  updateAddressList(
    ...[endpoints, config, options, note]: Parameters<LoadBalancer['updateAddressList']>
  ): boolean {
    if (!(config instanceof AvoidPeerConfig)) return false;
    if (endpoints.ok) this.replicas = Math.max(1, endpoints.value.length);
    return this.child.updateAddressList(endpoints, config.child, options, note);
  }

  exitIdle(): void {
    this.child.exitIdle();
  }

  resetBackoff(): void {
    this.child.resetBackoff();
  }

  destroy(): void {
    this.child.destroy();
  }

  getTypeName(): string {
    return AVOID_PEER_POLICY;
  }
}

let registered = false;

/** Makes AVOID_PEER_POLICY usable in this process's service configs. Safe to call repeatedly. */
export function registerAvoidPeerPolicy(): void {
  if (registered) return;
  registerLoadBalancerType(AVOID_PEER_POLICY, AvoidPeerLoadBalancer, AvoidPeerConfig);
  registered = true;
}
