import { experimental, type Metadata } from '@grpc/grpc-js';

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
 * Metadata a retry carries: the address of the replica its previous attempt failed on. (It reaches
 * the server too, as a harmless extra header: it tells which replica a retry left.)
 */
export const AVOID_PEER_KEY = 'x-retry-avoid-peer';

/**
 * A retry must go to another replica. grpc-js's round_robin takes the next ready replica in turn,
 * but calls from everywhere take turns too: with one replica of two hung, a retry would land on it
 * again half the time, and a third attempt a quarter of the time, each costing a whole attempt
 * timeout, until outlier detection ejects it. This picker asks its child (round_robin) again, up to
 * once per replica, when the pick is the replica that the call's AVOID_PEER_KEY names.
 */
class AvoidPeerPicker implements Picker {
  constructor(
    private readonly child: Picker,
    private readonly replicas: number,
  ) {}

  pick(args: PickArgs): PickResult {
    const avoid = avoidedPeer(args.metadata);
    let result = this.child.pick(args);
    for (let tries = 1; avoid && tries < this.replicas && isPeer(result, avoid); tries++) {
      result = this.child.pick(args);
    }
    return result;
  }
}

function avoidedPeer(metadata: Metadata): string | undefined {
  const value = metadata.get(AVOID_PEER_KEY)[0];
  return typeof value === 'string' ? value : undefined;
}

function isPeer(result: PickResult, peer: string): boolean {
  return (
    result.pickResultType === PickResultType.COMPLETE && result.subchannel?.getAddress() === peer
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
