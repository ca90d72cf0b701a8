import type {
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
} from 'kubernetes-types/networking/v1';
import type { Namespace } from 'kubernetes-types/core/v1';
import type { KubeObject } from './objects';
import { describeSelector, selects, workloads, type Workload } from './workloads';

/**
 * Which connections the NetworkPolicies allow, worked out the way the API defines them: a pod
 * selected by no policy of a direction is open in that direction; once selected, only what some
 * rule of a selecting policy allows gets through; and a connection needs both the caller's egress
 * and the callee's ingress to allow it.
 *
 * Each connection is one line: `from -> to:port` (`/udp` after a UDP port), where a workload of the
 * manifests is named by its name, and anything else by what the rule says: `ipBlock 192.0.2.10/32`,
 * `namespace kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns`, or `*` (anywhere).
 */
export function allowedConnections(objects: readonly KubeObject[]): string[] {
  const pods = workloads(objects);
  const policies = objects.filter(
    (object) => object.kind === 'NetworkPolicy',
  ) as unknown as NetworkPolicy[];
  // Every namespace carries its own name as a label (the API server adds it).
  const namespaceLabels = new Map<string, Record<string, string>>(
    (objects.filter((object) => object.kind === 'Namespace') as unknown as Namespace[]).map(
      (namespace) => [
        namespace.metadata!.name!,
        {
          ...namespace.metadata!.labels,
          'kubernetes.io/metadata.name': namespace.metadata!.name!,
        },
      ],
    ),
  );

  const typesOf = (policy: NetworkPolicy) =>
    policy.spec?.policyTypes ?? ['Ingress', ...(policy.spec?.egress ? ['Egress'] : [])];
  const selecting = (pod: Workload, direction: 'Ingress' | 'Egress') =>
    policies.filter(
      (policy) =>
        (policy.metadata?.namespace ?? 'default') === pod.namespace &&
        typesOf(policy).includes(direction) &&
        selects(policy.spec?.podSelector ?? {}, pod.labels),
    );

  /** Whether a peer of a rule in `policyNamespace` is this pod (ipBlocks are taken to be outside). */
  const peerIsPod = (peer: NetworkPolicyPeer, policyNamespace: string, pod: Workload) => {
    if (peer.ipBlock) return false;
    const namespaceMatches = peer.namespaceSelector
      ? selects(peer.namespaceSelector, namespaceLabels.get(pod.namespace) ?? {})
      : pod.namespace === policyNamespace;
    return namespaceMatches && selects(peer.podSelector ?? {}, pod.labels);
  };
  /** The ports a rule allows, on the ports a pod serves. */
  const portAllowed = (
    ports: NetworkPolicyPort[] | undefined,
    port: { number: number; name?: string; protocol: string },
  ) =>
    !ports?.length ||
    ports.some(
      (rule) =>
        (rule.protocol ?? 'TCP') === port.protocol &&
        (rule.port === undefined ||
          rule.port === port.name ||
          (typeof rule.port === 'number' &&
            port.number >= rule.port &&
            port.number <= (rule.endPort ?? rule.port))),
    );

  const connections = new Set<string>();
  const suffix = (protocol: string) => (protocol === 'UDP' ? '/udp' : '');

  // Between workloads of the manifests: to each port a container declares.
  for (const from of pods) {
    for (const to of pods) {
      const ports = to.pod.containers.flatMap((container) =>
        (container.ports ?? []).map((port) => ({
          number: port.containerPort,
          name: port.name,
          protocol: port.protocol ?? 'TCP',
        })),
      );
      for (const port of ports) {
        const egress = selecting(from, 'Egress');
        const egressAllowed =
          egress.length === 0 ||
          egress.some((policy) =>
            (policy.spec?.egress ?? []).some(
              (rule) =>
                (!rule.to?.length || rule.to.some((peer) => peerIsPod(peer, from.namespace, to))) &&
                portAllowed(rule.ports, port),
            ),
          );
        const ingress = selecting(to, 'Ingress');
        const ingressAllowed =
          ingress.length === 0 ||
          ingress.some((policy) =>
            (policy.spec?.ingress ?? []).some(
              (rule) =>
                (!rule.from?.length ||
                  rule.from.some((peer) => peerIsPod(peer, to.namespace, from))) &&
                portAllowed(rule.ports, port),
            ),
          );
        if (egressAllowed && ingressAllowed) {
          connections.add(`${from.name} -> ${to.name}:${port.number}${suffix(port.protocol)}`);
        }
      }
    }
  }

  // With anything outside the manifests' workloads: what each rule names that is not one of them.
  const outside = (peer: NetworkPolicyPeer): string | undefined => {
    if (peer.ipBlock) {
      const except = peer.ipBlock.except?.length ? ` except ${peer.ipBlock.except.join(',')}` : '';
      return `ipBlock ${peer.ipBlock.cidr}${except}`;
    }
    // Inside when it can only be the namespace of the manifests: no namespace selector (the
    // policy's own namespace), or one naming a namespace of the manifests exactly. Any other
    // selector may match namespaces the manifests know nothing of.
    const named = peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'];
    const inside =
      !peer.namespaceSelector ||
      (named !== undefined &&
        namespaceLabels.has(named) &&
        describeSelector(peer.namespaceSelector) === `kubernetes.io/metadata.name=${named}`);
    if (inside) return undefined;
    const pods = peer.podSelector ? describeSelector(peer.podSelector) : '';
    return `namespace ${describeSelector(peer.namespaceSelector!) || '*'}${pods ? ` pods ${pods}` : ''}`;
  };
  const portsOf = (ports: NetworkPolicyPort[] | undefined) =>
    ports?.length
      ? ports.map(
          (port) =>
            `${port.port ?? '*'}${port.endPort ? `-${port.endPort}` : ''}${suffix(port.protocol ?? 'TCP')}`,
        )
      : ['*'];
  for (const pod of pods) {
    const egress = selecting(pod, 'Egress');
    if (egress.length === 0) connections.add(`${pod.name} -> *:*`);
    for (const rule of egress.flatMap((policy) => policy.spec?.egress ?? [])) {
      const peers = rule.to?.length ? rule.to.map(outside) : ['*'];
      for (const peer of peers.filter((name) => name !== undefined)) {
        for (const port of portsOf(rule.ports)) connections.add(`${pod.name} -> ${peer}:${port}`);
      }
    }
    const ingress = selecting(pod, 'Ingress');
    if (ingress.length === 0) connections.add(`* -> ${pod.name}:*`);
    for (const rule of ingress.flatMap((policy) => policy.spec?.ingress ?? [])) {
      const peers = rule.from?.length ? rule.from.map(outside) : ['*'];
      for (const peer of peers.filter((name) => name !== undefined)) {
        for (const port of portsOf(rule.ports)) connections.add(`${peer} -> ${pod.name}:${port}`);
      }
    }
  }
  return [...connections].sort();
}
