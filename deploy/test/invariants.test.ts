import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { drainDelayMs } from '@repo/service-kit/config';
import type { z } from 'zod';
import { loadManifest } from '@repo/system/manifest';
import { invariants, resolvedEnv, type Context } from '../src/invariants';
import { buildOverlay, OVERLAYS, type KubeObject } from '../src/objects';
import { workloads } from '../src/workloads';

const ROOT = join(__dirname, '..', '..');
/** The apps of the manifest (apps/*\/package.json's `service`), in start order. */
const MANIFEST = loadManifest();
/** Each app's config schema: every app exports `configSchema` from src/config.ts. */
const configSchemas: Record<string, z.ZodType> = Object.fromEntries(
  MANIFEST.map((app) => {
    const file = join(ROOT, 'apps', app.name, 'src', 'config');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return [app.name, (require(file) as { configSchema: z.ZodType }).configSchema];
  }),
);

const compose = (
  parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Context['compose'];
  }
).services;

/**
 * Each app's heap limits by image name: its manifest's nodeOptions, e.g.
 * `--max-semi-space-size=4 --max-old-space-size=64`, which its image sets as NODE_OPTIONS (the
 * end-to-end deploy test checks the image).
 */
const heapLimits = Object.fromEntries(
  MANIFEST.map(({ name, nodeOptions }) => {
    const flag = (flagName: string) =>
      Number(new RegExp(`--${flagName}=(\\d+)`).exec(nodeOptions)?.[1]);
    return [
      compose[name]?.image ?? `reference/${name}`,
      { oldSpaceMb: flag('max-old-space-size'), semiSpaceMb: flag('max-semi-space-size') },
    ];
  }),
);

const built = Object.fromEntries(OVERLAYS.map((overlay) => [overlay, buildOverlay(overlay)]));
const local = built.local!;

function contextFor(overlay: string): Context {
  return {
    overlay,
    apps: MANIFEST,
    configSchemas,
    compose,
    heapLimits,
    drainDelayMs,
    // Production's Secrets are created out of band; its variables are checked with local's values.
    fallbackEnv: (deployment, variable) => {
      const workload = workloads(local).find(
        (candidate) => candidate.kind === 'Deployment' && candidate.name === deployment,
      );
      return workload && resolvedEnv(local, workload, {}).env[variable];
    },
  };
}

describe.each(OVERLAYS)('overlays/%s', (overlay) => {
  it.each(Object.entries(invariants))('%s', (_name, check) => {
    expect(check(built[overlay]!, contextFor(overlay))).toEqual([]);
  });
});

it('has the overlays the README describes', () => {
  expect(OVERLAYS).toEqual(expect.arrayContaining(['local', 'production']));
});

/** The local overlay, changed by `change`; and what the rule called `name` then finds. */
function problemsAfter(
  name: string,
  change: (objects: any[]) => void,
  overlay = 'local',
): string[] {
  const objects = structuredClone(built[overlay]!) as any[];
  change(objects);
  const check = Object.entries(invariants).find(([title]) => title.startsWith(name))?.[1];
  if (!check) throw new Error(`no invariant starting with ${name}`);
  return check(objects as KubeObject[], contextFor(overlay)).sort();
}

const find = (objects: any[], kind: string, name: string) =>
  objects.find((object) => object.kind === kind && object.metadata.name === name);

describe('the invariants have teeth', () => {
  it('a new Deployment without probes, autoscaler or budget fails', () => {
    const add = (objects: any[]) => {
      const search = structuredClone(find(objects, 'Deployment', 'user'));
      search.metadata.name = 'search';
      search.spec.selector.matchLabels['app.kubernetes.io/name'] = 'search';
      search.spec.template.metadata.labels['app.kubernetes.io/name'] = 'search';
      const container = search.spec.template.spec.containers[0];
      delete container.livenessProbe;
      delete container.readinessProbe;
      delete container.startupProbe;
      objects.push(search);
    };
    expect(problemsAfter('every Deployment has liveness', add)).toEqual([
      'Deployment/search container user has no liveness probe',
      'Deployment/search container user has no readiness probe',
      'Deployment/search container user has no startup probe',
    ]);
    expect(problemsAfter('every Deployment has a HorizontalPodAutoscaler', add)).toEqual([
      'Deployment/search: 0 HorizontalPodAutoscalers',
      'Deployment/search: 0 PodDisruptionBudgets select its pods',
    ]);
    expect(problemsAfter("every app's variables", add)).toEqual([
      'Deployment/search: no config schema known for it (see configSchemas)',
    ]);
  });

  it('an app of the manifest without its Deployment or migration Job, or with fewer replicas in production, fails', () => {
    const check = 'every app of the manifest runs as a Deployment';
    expect(
      problemsAfter(check, (objects) => {
        objects.splice(objects.indexOf(find(objects, 'Deployment', 'order')), 1);
        objects.splice(objects.indexOf(find(objects, 'Job', 'user-migrate')), 1);
      }),
    ).toEqual([
      'apps/order has no Deployment order (add deploy/kubernetes/base/order)',
      'apps/user has a database but no migration Job user-migrate',
    ]);
    expect(
      problemsAfter(
        check,
        (objects) => {
          find(objects, 'Deployment', 'user').spec.replicas = 1;
        },
        'production',
      ),
    ).toEqual(["Deployment/user: 1 replicas in production, fewer than its manifest's 2"]);
  });

  it('a gRPC app probed over HTTP, or whose liveness follows gRPC health, fails', () => {
    expect(
      problemsAfter('every Deployment has liveness', (objects) => {
        const container = find(objects, 'Deployment', 'order').spec.template.spec.containers[0];
        container.readinessProbe = { tcpSocket: { port: 50052 } };
        container.livenessProbe = container.startupProbe;
      }),
    ).toEqual([
      'Deployment/order container order: the liveness probe must not follow gRPC health',
      'Deployment/order container order: the readiness probe must ask gRPC health on port 50052 for its service (got {"tcpSocket":{"port":50052}})',
    ]);
  });

  it('a writable root filesystem, a missing limit or a memory limit below the heap fails', () => {
    expect(
      problemsAfter('every pod runs non-root', (objects) => {
        const container = find(objects, 'Job', 'user-migrate').spec.template.spec.containers[0];
        container.securityContext.readOnlyRootFilesystem = false;
        find(objects, 'StatefulSet', 'redis').spec.template.spec.securityContext.runAsNonRoot =
          false;
      }),
    ).toEqual([
      'Job/user-migrate container migrate: the root filesystem is not read-only',
      'StatefulSet/redis: runAsNonRoot is not true',
    ]);
    expect(
      problemsAfter('every container has resource', (objects) => {
        const gateway = find(objects, 'Deployment', 'gateway').spec.template.spec.containers[0];
        gateway.resources.limits.memory = '128Mi';
        delete find(objects, 'StatefulSet', 'user-db').spec.template.spec.containers[0].resources
          .limits.cpu;
      }),
    ).toEqual([
      'Deployment/gateway container gateway: memory limit 128Mi leaves too little above a 88 MB heap (at least 216Mi)',
      'Deployment/gateway container gateway: memory request 160Mi is above its limit 128Mi',
      'StatefulSet/user-db container postgres has no cpu limit',
    ]);
  });

  it('a grace period shorter than the drain fails, and so does a Deployment not spread', () => {
    expect(
      problemsAfter('every Deployment spreads', (objects) => {
        find(objects, 'Deployment', 'user').spec.template.spec.terminationGracePeriodSeconds = 15;
        delete find(objects, 'Deployment', 'order').spec.template.spec.topologySpreadConstraints;
      }),
    ).toEqual([
      'Deployment/order: no topology spread over kubernetes.io/hostname that selects its own pods',
      'Deployment/order: no topology spread over topology.kubernetes.io/zone that selects its own pods',
      'Deployment/user: terminationGracePeriodSeconds 15 is shorter than drain + grace + 5 s (20 s)',
    ]);
  });

  it('a variable the config schema does not know, or a value it refuses, fails', () => {
    expect(
      problemsAfter("every app's variables", (objects) => {
        const config = objects.find(
          (object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith('user-config'),
        );
        config.data.USER_GRPC_PORTT = '50051';
        const gateway = objects.find(
          (object) =>
            object.kind === 'ConfigMap' && object.metadata.name.startsWith('gateway-config'),
        );
        gateway.data.TRUST_PROXY_HOPS = 'one';
      }),
    ).toEqual([
      'Deployment/gateway: TRUST_PROXY_HOPS Invalid input: expected number, received NaN',
      'Deployment/user: USER_GRPC_PORTT is not a variable of its config schema',
    ]);
  });

  it('a gRPC Service with a cluster IP fails', () => {
    expect(
      problemsAfter('gRPC Services are headless', (objects) => {
        delete find(objects, 'Service', 'user').spec.clusterIP;
      }),
    ).toEqual([
      'Deployment/gateway USER_SERVICE_ADDR=dns:///user:50051: Service user is not headless, DNS gives one address',
      'Deployment/order USER_SERVICE_ADDR=dns:///user:50051: Service user is not headless, DNS gives one address',
      'Service/user serves gRPC but is not headless (clusterIP: None)',
    ]);
  });

  it('a database without its migration Job, or an image unlike compose, fails', () => {
    expect(
      problemsAfter('every database has a migration Job', (objects) => {
        objects.splice(objects.indexOf(find(objects, 'Job', 'order-migrate')), 1);
      }),
    ).toEqual(['Deployment/order: 0 Jobs migrate its database, expected 1']);
    expect(
      problemsAfter('images, commands and names', (objects) => {
        find(objects, 'Deployment', 'gateway').spec.template.spec.containers[0].image =
          'reference/gateway:dev';
      }),
    ).toEqual([
      'Deployment/gateway container gateway runs reference/gateway:dev, compose reference/gateway',
    ]);
  });

  it('production with one replica, a latest image or a committed Secret fails', () => {
    expect(
      problemsAfter(
        'every Deployment has a HorizontalPodAutoscaler',
        (objects) => {
          find(objects, 'Deployment', 'order').spec.replicas = 1;
        },
        'production',
      ),
    ).toEqual(['Deployment/order: fewer than 2 replicas in production']);
    expect(
      problemsAfter(
        'images, commands and names',
        (objects) => {
          const container = find(objects, 'Deployment', 'user').spec.template.spec.containers[0];
          container.image = container.image.replace(/:[^:/]+$/, ':latest');
        },
        'production',
      ),
    ).toEqual([
      expect.stringMatching(/^Deployment\/user container user: .*:latest has no release tag$/),
    ]);
    expect(
      problemsAfter(
        'production commits no Secret',
        (objects) => {
          objects.push({
            apiVersion: 'v1',
            kind: 'Secret',
            metadata: { name: 'gateway', namespace: 'reference' },
            stringData: { JWT_SECRET: 'x'.repeat(32) },
          });
        },
        'production',
      ),
    ).toEqual(['Secret/gateway is in the production manifests']);
  });

  it('an app not scraped, scraped on another port, or sending spans where the network does not let it, fails', () => {
    expect(
      problemsAfter('every app is scraped', (objects) => {
        delete find(objects, 'Deployment', 'gateway').spec.template.metadata.annotations;
        find(objects, 'Deployment', 'user').spec.template.metadata.annotations[
          'prometheus.io/port'
        ] = '50051';
      }),
    ).toEqual([
      'Deployment/gateway: no prometheus.io/scrape: "true" annotation',
      'Deployment/gateway: prometheus.io/path is not /metrics',
      'Deployment/gateway: prometheus.io/port undefined is not its http container port',
      'Deployment/user: METRICS_PORT 9101 is not the scraped port 50051',
      'Deployment/user: prometheus.io/port 50051 is not its metrics container port',
    ]);
    expect(
      problemsAfter(
        'every app is scraped',
        (objects) => {
          const config = objects.find(
            (object) =>
              object.kind === 'ConfigMap' && object.metadata.name.startsWith('order-config'),
          );
          config.data.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://collector.tracing.svc:4318';
          config.data.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = 'https://traces.example.com/v1/traces';
        },
        'production',
      ),
    ).toEqual([
      'Deployment/order: OTEL_EXPORTER_OTLP_ENDPOINT http://collector.tracing.svc:4318 is not reachable through the NetworkPolicies',
      'Deployment/order: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT https://traces.example.com/v1/traces is not reachable through the NetworkPolicies',
    ]);
  });

  it('an app on the postgres transport, or naming a NATS server the network does not let it reach, fails', () => {
    const config = (objects: any[], app: string) =>
      objects.find(
        (object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith(`${app}-config`),
      ).data;
    expect(
      problemsAfter('every app sends its events', (objects) => {
        config(objects, 'user').EVENTS_TRANSPORT = 'postgres';
        // The Service has no such port; a name outside the cluster; an address no ipBlock holds.
        config(objects, 'order').NATS_URL = 'nats://nats:4223';
        config(objects, 'gateway').NATS_URL =
          'nats://nats:4222, nats://nats.example.com:4222,nats://192.0.2.40:4222';
      }),
    ).toEqual([
      "Deployment/gateway: NATS_URL's nats://192.0.2.40:4222 is not reachable through the NetworkPolicies",
      "Deployment/gateway: NATS_URL's nats://nats.example.com:4222 is not reachable through the NetworkPolicies",
      "Deployment/order: NATS_URL's nats://nats:4223 is not reachable through the NetworkPolicies",
      'Deployment/user: EVENTS_TRANSPORT is postgres, not nats',
    ]);
    // Without the apps' way out to NATS, none reaches it.
    expect(
      problemsAfter('every app sends its events', (objects) => {
        objects.splice(objects.indexOf(find(objects, 'NetworkPolicy', 'apps-to-nats')), 1);
      }),
    ).toEqual(
      MANIFEST.map((app) => app.name)
        .sort()
        .map(
          (app) =>
            `Deployment/${app}: NATS_URL's nats://nats:4222 is not reachable through the NetworkPolicies`,
        ),
    );
    // Production's NATS in its own namespace, and one outside the cluster through an ipBlock.
    expect(
      problemsAfter(
        'every app sends its events',
        (objects) => {
          config(objects, 'order').NATS_URL = 'nats://nats.messaging.svc.cluster.local:4222';
          config(objects, 'gateway').NATS_URL = 'nats://192.0.2.41:4222';
          find(objects, 'NetworkPolicy', 'apps-to-nats').spec.egress.push({
            to: [{ ipBlock: { cidr: '192.0.2.40/30', except: ['192.0.2.41/32'] } }],
            ports: [{ protocol: 'TCP', port: 4222 }],
          });
        },
        'production',
      ),
    ).toEqual([
      "Deployment/gateway: NATS_URL's nats://192.0.2.41:4222 is not reachable through the NetworkPolicies",
      "Deployment/order: NATS_URL's nats://nats.messaging.svc.cluster.local:4222 is not reachable through the NetworkPolicies",
    ]);
  });

  it("apps that differ on the NATS streams' replicas, or ask more than the NATS they run has, fail", () => {
    /** What the check lists: every app of the manifest by name, `others` but for `changed`. */
    const replicasOf = (changed: Record<string, number>, others: number) =>
      MANIFEST.map((app) => app.name)
        .sort()
        .map((app) => `${app} ${changed[app] ?? others}`)
        .join(', ');
    const config = (objects: any[], app: string) =>
      objects.find(
        (object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith(`${app}-config`),
      ).data;
    // The local overlay's NATS is one server.
    expect(
      problemsAfter("the apps agree on the NATS streams' replicas", (objects) => {
        config(objects, 'user').EVENTS_STREAM_REPLICAS = '3';
      }),
    ).toEqual([
      "Deployment/user: EVENTS_STREAM_REPLICAS 3 is more than StatefulSet/nats's 1 server(s)",
      `the apps' EVENTS_STREAM_REPLICAS differ: ${replicasOf({ user: 3 }, 1)}`,
    ]);
    // Production's NATS is not the deployment's own: 3 (or 5) is the cluster's business.
    expect(
      problemsAfter(
        "the apps agree on the NATS streams' replicas",
        (objects) => {
          config(objects, 'order').EVENTS_STREAM_REPLICAS = '5';
        },
        'production',
      ),
    ).toEqual([`the apps' EVENTS_STREAM_REPLICAS differ: ${replicasOf({ order: 5 }, 3)}`]);
  });

  describe('network', () => {
    const policy = (name: string, spec: object) => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name, namespace: 'reference' },
      spec,
    });

    it('without the default deny, everything is open', () => {
      const problems = problemsAfter('network', (objects) => {
        objects.splice(objects.indexOf(find(objects, 'NetworkPolicy', 'default-deny')), 1);
      });
      expect(problems).toContain(
        'no default-deny NetworkPolicy (every pod, both directions, no rule)',
      );
      // The migration Jobs, which no other policy selects for ingress, are open to anyone.
      expect(problems).toContain('unexpected connection: * -> user-migrate:*');
    });

    it('a service reaching another database fails', () => {
      expect(
        problemsAfter('network', (objects) => {
          objects.push(
            policy('order-out', {
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'order' } },
              policyTypes: ['Egress'],
              egress: [{ to: [{ podSelector: {} }] }],
            }),
            policy('user-db-from-all', {
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'user-db' } },
              policyTypes: ['Ingress'],
              ingress: [{}],
            }),
          );
        }),
      ).toEqual([
        'order reaches 2 databases: order-db:5432, user-db:5432',
        'unexpected connection: * -> user-db:*',
      ]);
    });

    it('an app calling another in a new direction fails', () => {
      // What the manifests declare (a generated service with gateway routes adds the gateway's call).
      const port = (name: string) => MANIFEST.find((app) => app.name === name)?.port;
      const declared = MANIFEST.flatMap((app) =>
        app.calls.map((callee) => `${app.name} -> ${callee}:${port(callee)}`),
      ).sort();
      const allowed = [...declared, 'user -> order:50052'].sort();
      expect(
        problemsAfter('network', (objects) => {
          objects.push(
            policy('user-to-order', {
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'user' } },
              policyTypes: ['Egress'],
              egress: [
                { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'order' } } }] },
              ],
            }),
          );
          find(objects, 'NetworkPolicy', 'order').spec.ingress[0].from.push({
            podSelector: { matchLabels: { 'app.kubernetes.io/name': 'user' } },
          });
        }),
      ).toEqual([
        `the apps may call ${JSON.stringify(allowed)}, expected ${JSON.stringify(declared)}`,
      ]);
    });

    it('Prometheus scraping another port, or the collector reachable from elsewhere, fails', () => {
      expect(
        problemsAfter('network', (objects) => {
          find(objects, 'NetworkPolicy', 'user').spec.ingress[1].ports.push({
            protocol: 'TCP',
            port: 50051,
          });
          find(
            objects,
            'NetworkPolicy',
            'allow-otlp',
          ).spec.podSelector.matchExpressions[0].values.push('user-db');
        }),
      ).toEqual([
        expect.stringMatching(
          /^Prometheus may scrape \[.*"namespace kubernetes.io\/metadata.name=monitoring pods app.kubernetes.io\/name=prometheus -> user:50051"/,
        ),
        expect.stringMatching(/^the collector is reachable from \[.*"user-db -> namespace/),
      ]);
    });

    it('NATS reached by a migration Job, open to everyone or closed to the apps fails', () => {
      expect(
        problemsAfter('network', (objects) => {
          find(
            objects,
            'NetworkPolicy',
            'apps-to-nats',
          ).spec.podSelector.matchExpressions[0].values.push('user-migrate');
          find(objects, 'NetworkPolicy', 'nats').spec.ingress[0].from[0].podSelector = {};
        }),
      ).toEqual([
        `NATS is reachable as ${JSON.stringify(
          [...MANIFEST.map((app) => app.name), 'user-migrate']
            .sort()
            .map((from) => `${from} -> nats:4222`),
        )}, expected from every app and nothing else`,
      ]);
      expect(
        problemsAfter('network', (objects) => {
          find(objects, 'NetworkPolicy', 'nats').spec.ingress = [{}];
        }),
      ).toEqual(['unexpected connection: * -> nats:*']);
      // And without its policy, the default deny leaves the apps without NATS.
      expect(
        problemsAfter('network', (objects) => {
          objects.splice(objects.indexOf(find(objects, 'NetworkPolicy', 'nats')), 1);
        }),
      ).toEqual(['NATS is reachable as [], expected from every app and nothing else']);
    });

    it('an egress rule to anywhere fails', () => {
      expect(
        problemsAfter(
          'network',
          (objects) => {
            objects.push(
              policy('gateway-out', {
                podSelector: { matchLabels: { 'app.kubernetes.io/name': 'gateway' } },
                policyTypes: ['Egress'],
                egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }], ports: [{ port: 443 }] }],
              }),
            );
          },
          'production',
        ),
      ).toEqual(['unexpected connection: gateway -> ipBlock 0.0.0.0/0:443']);
    });
  });
});
