import type { Deployment } from 'kubernetes-types/apps/v1';
import type { HorizontalPodAutoscaler } from 'kubernetes-types/autoscaling/v2';
import type { Job } from 'kubernetes-types/batch/v1';
import type {
  ConfigMap,
  Container,
  EnvVar,
  Namespace,
  Probe,
  Secret,
  Service,
} from 'kubernetes-types/core/v1';
import type { Ingress } from 'kubernetes-types/networking/v1';
import type { PodDisruptionBudget } from 'kubernetes-types/policy/v1';
import type { z } from 'zod';
import type { AppManifest } from '@repo/system/manifest';
import { allowedConnections } from './network';
import type { KubeObject } from './objects';
import { quantity, selects, workloads, type Workload } from './workloads';

/**
 * The rules every overlay's manifests must keep, each a function from the built objects to the
 * problems it finds (none: the rule holds). They iterate over what they find: a new Deployment is
 * held to the same rules as the existing ones without being listed anywhere.
 */

/** What the rules know beyond the manifests themselves. */
export interface Context {
  overlay: string;
  /** The apps of the manifest (apps/*\/package.json's `service`, @repo/system/manifest). */
  apps: readonly AppManifest[];
  /** Each app's config schema (apps/<app>/src/config.ts), by Deployment name. */
  configSchemas: Record<string, z.ZodType>;
  /** Where a Secret is not in the manifests (production), its values for checking: the local overlay's. */
  fallbackEnv?: (deployment: string, variable: string) => string | undefined;
  /** docker-compose.yml's services: the same images, commands and names. */
  compose: Record<string, { image?: string; command?: string[] }>;
  /**
   * `--max-old-space-size` and `--max-semi-space-size` (MB) of each app's image (its manifest's
   * nodeOptions, which its image sets), by image name.
   */
  heapLimits: Record<string, { oldSpaceMb: number; semiSpaceMb: number }>;
  /** drain delay (ms) an app uses for a parsed config (service-kit's drainDelayMs). */
  drainDelayMs: (config: { NODE_ENV: string; DRAIN_DELAY_MS?: number }) => number;
}

export type Invariant = (objects: readonly KubeObject[], context: Context) => string[];

const ofKind = <T>(objects: readonly KubeObject[], kind: string) =>
  objects.filter((object) => object.kind === kind) as unknown as (T & {
    metadata: { name: string; namespace?: string };
  })[];

const containersOf = (workload: Workload): Container[] => [
  ...(workload.pod.initContainers ?? []),
  ...workload.pod.containers,
];

const deploymentWorkloads = (objects: readonly KubeObject[]) =>
  workloads(objects).filter((workload) => workload.kind === 'Deployment');

/** A container's gRPC port, if it serves gRPC (a port named `grpc`). */
const grpcPort = (container: Container) =>
  container.ports?.find((port) => port.name === 'grpc')?.containerPort;

/** `registry.example.com/reference/user:1.0.0` -> `registry.example.com/reference/user` and `1.0.0`. */
function imageParts(image: string): { repository: string; tag?: string } {
  const [repository, tag] = image.split(/:(?=[^/]*$)/);
  return { repository: repository!, tag };
}

/** The heap limits of an image of ours, also under a registry's name (production). */
function heapLimitsOf(image: string, context: Context) {
  const { repository } = imageParts(image);
  const name = Object.keys(context.heapLimits).find(
    (candidate) => repository === candidate || repository.endsWith(`/${candidate}`),
  );
  return name === undefined ? undefined : context.heapLimits[name];
}

const PROBES = ['liveness', 'readiness', 'startup'] as const;

/** Where Prometheus and the OpenTelemetry Collector run, as allowedConnections names them. */
export const PROMETHEUS =
  'namespace kubernetes.io/metadata.name=monitoring pods app.kubernetes.io/name=prometheus';
export const COLLECTOR_NAMESPACE = 'observability';
export const COLLECTOR = `namespace kubernetes.io/metadata.name=${COLLECTOR_NAMESPACE} pods app.kubernetes.io/name=opentelemetry-collector`;
/** OTLP/gRPC and OTLP/HTTP (the apps' exporter). */
const OTLP_PORTS = [4317, 4318];
/** NATS's client port, also where NATS_URL names none. */
const NATS_PORT = 4222;

export const invariants: Record<string, Invariant> = {
  'every namespaced object is in the namespace, which enforces the restricted Pod Security Standard':
    (objects) => {
      const namespaces = ofKind<Namespace>(objects, 'Namespace');
      const problems: string[] = [];
      if (namespaces.length !== 1) problems.push(`${namespaces.length} Namespaces, expected 1`);
      const name = namespaces[0]?.metadata.name;
      if (namespaces[0]?.metadata.labels?.['pod-security.kubernetes.io/enforce'] !== 'restricted')
        problems.push(`Namespace ${name} does not enforce the restricted Pod Security Standard`);
      for (const object of objects) {
        if (object.kind !== 'Namespace' && object.metadata.namespace !== name)
          problems.push(`${object.kind}/${object.metadata.name} is not in namespace ${name}`);
      }
      return problems;
    },

  'every Deployment has liveness, readiness and startup probes; gRPC apps are probed with gRPC health':
    (objects) =>
      deploymentWorkloads(objects).flatMap((workload) =>
        workload.pod.containers.flatMap((container) => {
          const where = `Deployment/${workload.name} container ${container.name}`;
          const probes: Record<(typeof PROBES)[number], Probe | undefined> = {
            liveness: container.livenessProbe,
            readiness: container.readinessProbe,
            startup: container.startupProbe,
          };
          const problems = PROBES.filter((kind) => !probes[kind]).map(
            (kind) => `${where} has no ${kind} probe`,
          );
          const declared = new Set(
            (container.ports ?? []).flatMap((port) => [port.containerPort, port.name]),
          );
          for (const kind of PROBES) {
            const probe = probes[kind];
            const port = probe?.grpc?.port ?? probe?.httpGet?.port ?? probe?.tcpSocket?.port;
            if (probe && !probe.exec && !declared.has(port))
              problems.push(`${where}: the ${kind} probe's port ${port} is not a container port`);
          }
          const grpc = grpcPort(container);
          if (grpc !== undefined) {
            // Ready (and started) = its gRPC health for the service says SERVING.
            for (const kind of ['readiness', 'startup'] as const) {
              const probe = probes[kind]?.grpc;
              if (probes[kind] && (probe?.port !== grpc || !probe.service))
                problems.push(
                  `${where}: the ${kind} probe must ask gRPC health on port ${grpc} for its service (got ${JSON.stringify(probes[kind])})`,
                );
            }
            // gRPC health follows the database; a liveness probe on it would restart every
            // replica whenever the database is away, which brings nothing back.
            if (probes.liveness?.grpc)
              problems.push(`${where}: the liveness probe must not follow gRPC health`);
          }
          return problems;
        }),
      ),

  'every container has resource requests and limits; the apps have room above their heap limit': (
    objects,
    context,
  ) =>
    workloads(objects).flatMap((workload) =>
      containersOf(workload).flatMap((container) => {
        const where = `${workload.kind}/${workload.name} container ${container.name}`;
        const { requests = {}, limits = {} } = container.resources ?? {};
        const problems: string[] = [];
        for (const resource of ['cpu', 'memory']) {
          const request = requests[resource];
          const limit = limits[resource];
          if (request === undefined) problems.push(`${where} has no ${resource} request`);
          if (limit === undefined) problems.push(`${where} has no ${resource} limit`);
          if (request !== undefined && limit !== undefined && quantity(request) > quantity(limit))
            problems.push(`${where}: ${resource} request ${request} is above its limit ${limit}`);
        }
        const heap = heapLimitsOf(container.image ?? '', context);
        if (heap && limits.memory !== undefined) {
          // V8's young generation is three semi-spaces; code, buffers and native memory come on
          // top (measured peak RSS 115-140 MB with a 64 MB old space).
          const heapMi = heap.oldSpaceMb + 3 * heap.semiSpaceMb;
          const needed = (heapMi + 128) * 2 ** 20;
          if (quantity(limits.memory) < needed)
            problems.push(
              `${where}: memory limit ${limits.memory} leaves too little above a ${heapMi} MB heap (at least ${heapMi + 128}Mi)`,
            );
        }
        return problems;
      }),
    ),

  'every pod runs non-root, read-only, without capabilities or privilege escalation': (objects) =>
    workloads(objects).flatMap((workload) => {
      const where = `${workload.kind}/${workload.name}`;
      const pod = workload.pod;
      const problems: string[] = [];
      if (pod.securityContext?.runAsNonRoot !== true)
        problems.push(`${where}: runAsNonRoot is not true`);
      // The images name their users (`node`, `postgres`), which the kubelet cannot check against
      // runAsNonRoot: a numeric uid must be given.
      if (!(Number(pod.securityContext?.runAsUser) > 0))
        problems.push(`${where}: no non-zero runAsUser`);
      if (pod.securityContext?.seccompProfile?.type !== 'RuntimeDefault')
        problems.push(`${where}: the seccomp profile is not RuntimeDefault`);
      if (pod.automountServiceAccountToken !== false)
        problems.push(`${where}: mounts a service account token it does not need`);
      if (pod.hostNetwork || pod.hostPID || pod.hostIPC)
        problems.push(`${where}: shares a host namespace`);
      for (const volume of pod.volumes ?? []) {
        if (volume.hostPath)
          problems.push(`${where}: mounts the host path ${volume.hostPath.path}`);
      }
      for (const container of containersOf(workload)) {
        const context = container.securityContext;
        const name = `${where} container ${container.name}`;
        if (context?.allowPrivilegeEscalation !== false)
          problems.push(`${name}: allowPrivilegeEscalation is not false`);
        if (context?.readOnlyRootFilesystem !== true)
          problems.push(`${name}: the root filesystem is not read-only`);
        if (!context?.capabilities?.drop?.includes('ALL'))
          problems.push(`${name}: does not drop ALL capabilities`);
        if (context?.capabilities?.add?.length)
          problems.push(`${name}: adds capabilities ${context.capabilities.add.join(', ')}`);
        if (context?.privileged) problems.push(`${name}: is privileged`);
        if (context?.runAsUser === 0) problems.push(`${name}: runs as root`);
      }
      return problems;
    }),

  'every Deployment spreads its replicas over nodes and zones, and drains within its grace period':
    (objects, context) =>
      deploymentWorkloads(objects).flatMap((workload) => {
        const where = `Deployment/${workload.name}`;
        const problems: string[] = [];
        for (const key of ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']) {
          const spread = workload.pod.topologySpreadConstraints?.find(
            (constraint) => constraint.topologyKey === key,
          );
          if (!spread?.labelSelector || !selects(spread.labelSelector, workload.labels))
            problems.push(`${where}: no topology spread over ${key} that selects its own pods`);
        }
        // SIGTERM: DRAIN_DELAY_MS reporting not ready, SHUTDOWN_GRACE_MS for work in flight, and
        // the app's own limit on its clean-up 5 s after both. The kubelet must not kill it sooner.
        const config = parsedConfig(objects, workload, context);
        if (config) {
          const needed = context.drainDelayMs(config) + Number(config.SHUTDOWN_GRACE_MS) + 5_000;
          const grace = (workload.pod.terminationGracePeriodSeconds ?? 30) * 1_000;
          if (grace < needed)
            problems.push(
              `${where}: terminationGracePeriodSeconds ${grace / 1_000} is shorter than drain + grace + 5 s (${needed / 1_000} s)`,
            );
        }
        return problems;
      }),

  'every Deployment has a HorizontalPodAutoscaler and a PodDisruptionBudget of its own': (
    objects,
    context,
  ) => {
    const deployments = deploymentWorkloads(objects);
    const autoscalers = ofKind<HorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler');
    const budgets = ofKind<PodDisruptionBudget>(objects, 'PodDisruptionBudget');
    const all = workloads(objects);
    const problems: string[] = [];
    const production = context.overlay === 'production';
    for (const workload of deployments) {
      const where = `Deployment/${workload.name}`;
      const mine = autoscalers.filter(
        (hpa) =>
          hpa.spec?.scaleTargetRef.kind === 'Deployment' &&
          hpa.spec.scaleTargetRef.name === workload.name,
      );
      if (mine.length !== 1) problems.push(`${where}: ${mine.length} HorizontalPodAutoscalers`);
      const hpa = mine[0]?.spec;
      if (hpa && (hpa.minReplicas ?? 1) > hpa.maxReplicas)
        problems.push(`${where}: its autoscaler's minReplicas is above maxReplicas`);
      if (hpa && !hpa.metrics?.length) problems.push(`${where}: its autoscaler has no metric`);
      const covering = budgets.filter((pdb) => selects(pdb.spec?.selector ?? {}, workload.labels));
      if (covering.length !== 1)
        problems.push(`${where}: ${covering.length} PodDisruptionBudgets select its pods`);
      const deployment = ofKind<Deployment>(objects, 'Deployment').find(
        (object) => object.metadata.name === workload.name,
      );
      if (production) {
        // Losing one pod or node, or draining one, must never leave an app without a server.
        if ((deployment?.spec?.replicas ?? 1) < 2)
          problems.push(`${where}: fewer than 2 replicas in production`);
        if (hpa && (hpa.minReplicas ?? 1) < 2)
          problems.push(`${where}: its autoscaler may go below 2 replicas in production`);
      }
    }
    for (const pdb of budgets) {
      const selected = all.filter((workload) => selects(pdb.spec?.selector ?? {}, workload.labels));
      if (selected.length !== 1 || selected[0]!.kind !== 'Deployment')
        problems.push(
          `PodDisruptionBudget/${pdb.metadata.name} selects ${selected.map((workload) => workload.name).join(', ') || 'nothing'}, not one Deployment`,
        );
    }
    for (const hpa of autoscalers) {
      if (!deployments.some((workload) => workload.name === hpa.spec?.scaleTargetRef.name))
        problems.push(`HorizontalPodAutoscaler/${hpa.metadata.name} scales no Deployment`);
    }
    return problems;
  },

  'gRPC Services are headless, and every dns:/// target names one': (objects, context) => {
    const services = ofKind<Service>(objects, 'Service');
    const all = workloads(objects);
    const problems: string[] = [];
    for (const service of services) {
      const where = `Service/${service.metadata.name}`;
      const backends = all.filter((workload) =>
        selects({ matchLabels: service.spec?.selector ?? {} }, workload.labels),
      );
      if (!service.spec?.selector || backends.length === 0)
        problems.push(`${where} selects no pods`);
      const grpc = backends.some((workload) =>
        workload.pod.containers.some((container) => grpcPort(container) !== undefined),
      );
      // One HTTP/2 connection per client behind a cluster IP: every call to one replica.
      if (grpc && service.spec?.clusterIP !== 'None')
        problems.push(`${where} serves gRPC but is not headless (clusterIP: None)`);
    }
    for (const workload of deploymentWorkloads(objects)) {
      for (const [variable, value] of Object.entries(resolvedEnv(objects, workload, context).env)) {
        const target = /^dns:\/\/\/([^:/]+):(\d+)$/.exec(value);
        if (!target) continue;
        const service = services.find((candidate) => candidate.metadata.name === target[1]);
        const where = `Deployment/${workload.name} ${variable}=${value}`;
        if (!service) problems.push(`${where}: no Service ${target[1]}`);
        else if (service.spec?.clusterIP !== 'None')
          problems.push(`${where}: Service ${target[1]} is not headless, DNS gives one address`);
        else if (!service.spec.ports?.some((port) => port.port === Number(target[2])))
          problems.push(`${where}: Service ${target[1]} has no port ${target[2]}`);
      }
    }
    return problems;
  },

  'the gateway is published by a Service and an Ingress': (objects) => {
    const ingresses = ofKind<Ingress>(objects, 'Ingress');
    const services = ofKind<Service>(objects, 'Service');
    const problems: string[] = [];
    const backends = ingresses.flatMap((ingress) =>
      (ingress.spec?.rules ?? []).flatMap((rule) =>
        (rule.http?.paths ?? []).map((path) => path.backend.service),
      ),
    );
    if (!backends.some((backend) => backend?.name === 'gateway'))
      problems.push('no Ingress routes to the gateway Service');
    for (const backend of backends) {
      const service = services.find((candidate) => candidate.metadata.name === backend?.name);
      if (
        !service?.spec?.ports?.some(
          (port) => port.name === backend?.port?.name || port.port === backend?.port?.number,
        )
      )
        problems.push(`an Ingress routes to ${JSON.stringify(backend)}, which no Service serves`);
    }
    return problems;
  },

  'every database has a migration Job, run with the service database and the migrate image': (
    objects,
    context,
  ) => {
    const jobs = ofKind<Job>(objects, 'Job');
    const problems: string[] = [];
    for (const workload of deploymentWorkloads(objects)) {
      const container = workload.pod.containers[0]!;
      const database = container.env?.find((variable) => variable.name === 'DATABASE_URL');
      if (!database) continue;
      const where = `Deployment/${workload.name}`;
      const reference = database.valueFrom?.secretKeyRef;
      if (!reference) {
        problems.push(`${where}: DATABASE_URL is not read from a Secret`);
        continue;
      }
      const migrations = jobs.filter((job) =>
        job.spec?.template.spec?.containers.some((candidate) =>
          candidate.env?.some(
            (variable) =>
              variable.name === 'DATABASE_URL' &&
              variable.valueFrom?.secretKeyRef?.name === reference.name &&
              variable.valueFrom?.secretKeyRef?.key === reference.key,
          ),
        ),
      );
      if (migrations.length !== 1) {
        problems.push(`${where}: ${migrations.length} Jobs migrate its database, expected 1`);
        continue;
      }
      const job = migrations[0]!.spec!.template.spec!.containers[0]!;
      const image = imageParts(container.image ?? '');
      if (job.image !== `${image.repository}-migrate${image.tag ? `:${image.tag}` : ''}`)
        problems.push(`${where}: its migration Job runs ${job.image}, not its migrate image`);
      if (
        JSON.stringify(job.args) !==
        JSON.stringify(['node_modules/.bin/prisma', 'migrate', 'deploy'])
      )
        problems.push(`${where}: its migration Job does not run prisma migrate deploy`);
      const config = parsedConfig(objects, workload, context);
      if (config && config.MIGRATE_ON_START !== false)
        problems.push(`${where}: MIGRATE_ON_START is not false (its Job migrates)`);
    }
    return problems;
  },

  "every app's variables are ones its config schema knows, and parse": (objects, context) =>
    deploymentWorkloads(objects).flatMap((workload) => {
      const where = `Deployment/${workload.name}`;
      const schema = context.configSchemas[workload.name];
      if (!schema) return [`${where}: no config schema known for it (see configSchemas)`];
      const known = new Set(schemaKeys(schema));
      const { env, unresolved } = resolvedEnv(objects, workload, context);
      const problems = [
        ...Object.keys(env),
        ...unresolved.filter((name) => !name.startsWith('envFrom ')),
      ]
        .filter((name) => !known.has(name))
        .map((name) => `${where}: ${name} is not a variable of its config schema`);
      problems.push(
        ...unresolved.map((name) => `${where}: ${name}: its Secret or ConfigMap is not found`),
      );
      if (unresolved.length === 0) {
        const result = schema.safeParse(env);
        if (!result.success)
          problems.push(
            ...result.error.issues.map(
              (issue) => `${where}: ${issue.path.join('.')} ${issue.message}`,
            ),
          );
      }
      return problems;
    }),

  'every app is scraped by Prometheus on the port it serves /metrics on; its spans go to the collector the network lets it reach':
    (objects, context) =>
      deploymentWorkloads(objects).flatMap((workload) => {
        const where = `Deployment/${workload.name}`;
        const problems: string[] = [];
        const { annotations } = workload;
        if (annotations['prometheus.io/scrape'] !== 'true')
          problems.push(`${where}: no prometheus.io/scrape: "true" annotation`);
        if (annotations['prometheus.io/path'] !== '/metrics')
          problems.push(`${where}: prometheus.io/path is not /metrics`);
        const port = Number(annotations['prometheus.io/port']);
        const container = workload.pod.containers[0]!;
        const config = parsedConfig(objects, workload, context);
        // A gRPC app serves /metrics on a port of its own (METRICS_PORT), declared as `metrics`;
        // an HTTP app on its API port.
        const expected =
          grpcPort(container) === undefined
            ? container.ports?.find((candidate) => candidate.name === 'http')?.containerPort
            : container.ports?.find((candidate) => candidate.name === 'metrics')?.containerPort;
        if (expected === undefined || port !== expected)
          problems.push(
            `${where}: prometheus.io/port ${annotations['prometheus.io/port']} is not its ${grpcPort(container) === undefined ? 'http' : 'metrics'} container port`,
          );
        if (grpcPort(container) !== undefined && config && config.METRICS_PORT !== port)
          problems.push(
            `${where}: METRICS_PORT ${String(config.METRICS_PORT)} is not the scraped port ${port}`,
          );
        const { env } = resolvedEnv(objects, workload, context);
        for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
          const endpoint = env[name];
          if (!endpoint) continue;
          const url = new URL(endpoint);
          const otlpPort = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
          if (!reachable(objects, workload, url.hostname, otlpPort))
            problems.push(
              `${where}: ${name} ${endpoint} is not reachable through the NetworkPolicies`,
            );
        }
        return problems;
      }),

  'every app sends its events through NATS JetStream, at servers the NetworkPolicies let it reach':
    (objects, context) =>
      deploymentWorkloads(objects).flatMap((workload) => {
        const where = `Deployment/${workload.name}`;
        const config = parsedConfig(objects, workload, context);
        // An invalid environment is the variables' rule's to report; an app without events has none.
        if (!config || !('EVENTS_TRANSPORT' in config)) return [];
        // The postgres transport is `pnpm dev`'s: a broker database next to the services' own.
        if (config.EVENTS_TRANSPORT !== 'nats')
          return [`${where}: EVENTS_TRANSPORT is ${String(config.EVENTS_TRANSPORT)}, not nats`];
        return String(config.NATS_URL)
          .split(',')
          .map((server) => server.trim())
          .filter((server) => {
            const url = new URL(server.includes('://') ? server : `nats://${server}`);
            return !reachable(objects, workload, url.hostname, Number(url.port || NATS_PORT));
          })
          .map(
            (server) =>
              `${where}: NATS_URL's ${server} is not reachable through the NetworkPolicies`,
          );
      }),

  // Every app applies its EVENTS_STREAM_REPLICAS to the streams when it starts: apps that differ
  // would resize them back and forth, and a NATS this deployment runs itself cannot copy a stream
  // to more servers than it has (the apps would fail to start).
  "the apps agree on the NATS streams' replicas, which the deployment's own NATS can hold": (
    objects,
    context,
  ) => {
    const replicas = new Map<string, number>();
    for (const workload of deploymentWorkloads(objects)) {
      const config = parsedConfig(objects, workload, context);
      if (config?.EVENTS_TRANSPORT === 'nats')
        replicas.set(workload.name, Number(config.EVENTS_STREAM_REPLICAS));
    }
    const problems: string[] = [];
    if (new Set(replicas.values()).size > 1) {
      const each = [...replicas].map(([app, count]) => `${app} ${count}`).join(', ');
      problems.push(`the apps' EVENTS_STREAM_REPLICAS differ: ${each}`);
    }
    const nats = ofKind<{ spec: { replicas?: number } }>(objects, 'StatefulSet').find(
      (set) => set.metadata.name === 'nats',
    );
    const servers = nats?.spec.replicas ?? 1;
    for (const [app, count] of nats ? replicas : [])
      if (count > servers)
        problems.push(
          `Deployment/${app}: EVENTS_STREAM_REPLICAS ${count} is more than StatefulSet/nats's ${servers} server(s)`,
        );
    return problems;
  },

  'images, commands and names match docker-compose.yml': (objects, context) =>
    workloads(objects).flatMap((workload) =>
      containersOf(workload).flatMap((container) => {
        const where = `${workload.kind}/${workload.name} container ${container.name}`;
        const service = context.compose[workload.name];
        if (!service?.image) {
          return context.overlay === 'production'
            ? [] // what production adds has nothing in compose (none today)
            : [`${where}: no compose service ${workload.name} with an image`];
        }
        const problems: string[] = [];
        const { repository, tag } = imageParts(container.image ?? '');
        if (context.overlay === 'production') {
          // Your registry, a released tag: the same image under another name.
          if (!repository.endsWith(`/${imageParts(service.image).repository}`))
            problems.push(`${where} runs ${container.image}, not compose's ${service.image}`);
          if (!tag || tag === 'latest')
            problems.push(`${where}: ${container.image} has no release tag`);
        } else if (container.image !== service.image) {
          problems.push(`${where} runs ${container.image}, compose ${service.image}`);
        }
        // Compose's `command` replaces the image's CMD, as `args` does in Kubernetes (`command`
        // would replace its ENTRYPOINT too).
        if (container.command)
          problems.push(`${where} replaces its image's entrypoint (use args, as compose does)`);
        if (JSON.stringify(container.args) !== JSON.stringify(service.command))
          problems.push(
            `${where} runs ${JSON.stringify(container.args)}, compose ${JSON.stringify(service.command)}`,
          );
        return problems;
      }),
    ),

  'every app of the manifest runs as a Deployment of its name, with a migration Job if it has a database, and its replicas at least in production':
    (objects, context) => {
      const problems: string[] = [];
      const deployments = ofKind<Deployment>(objects, 'Deployment');
      const jobs = ofKind<Job>(objects, 'Job');
      for (const app of context.apps) {
        const deployment = deployments.find((object) => object.metadata.name === app.name);
        if (!deployment) {
          problems.push(
            `apps/${app.name} has no Deployment ${app.name} (add deploy/kubernetes/base/${app.name})`,
          );
          continue;
        }
        if (app.database && !jobs.some((job) => job.metadata.name === `${app.name}-migrate`))
          problems.push(`apps/${app.name} has a database but no migration Job ${app.name}-migrate`);
        if (context.overlay === 'production' && (deployment.spec?.replicas ?? 1) < app.replicas)
          problems.push(
            `Deployment/${app.name}: ${deployment.spec?.replicas ?? 1} replicas in production, fewer than its manifest's ${app.replicas}`,
          );
      }
      return problems;
    },

  'production commits no Secret': (objects, context) =>
    context.overlay === 'production'
      ? ofKind<Secret>(objects, 'Secret').map(
          (secret) => `Secret/${secret.metadata.name} is in the production manifests`,
        )
      : [],

  "network: default deny; only the calls of the apps' manifests (gateway->user, gateway->order, order->user), each service to its own database, the gateway to Redis, the apps to NATS, DNS, Prometheus scraping the apps, the apps to the collector":
    (objects, context) => {
      const problems: string[] = [];
      const policies = objects.filter((object) => object.kind === 'NetworkPolicy') as unknown as {
        metadata: { name: string };
        spec: { podSelector: object; policyTypes?: string[]; ingress?: unknown; egress?: unknown };
      }[];
      const denyAll = policies.some(
        (policy) =>
          Object.keys(policy.spec.podSelector).length === 0 &&
          policy.spec.policyTypes?.includes('Ingress') &&
          policy.spec.policyTypes.includes('Egress') &&
          !policy.spec.ingress &&
          !policy.spec.egress,
      );
      if (!denyAll)
        problems.push('no default-deny NetworkPolicy (every pod, both directions, no rule)');

      const all = workloads(objects);
      const names = new Set(all.map((workload) => workload.name));
      let connections = allowedConnections(objects);
      const take = (pattern: RegExp) => {
        const taken = connections.filter((connection) => pattern.test(connection));
        connections = connections.filter((connection) => !pattern.test(connection));
        return taken;
      };

      // DNS: every pod may ask kube-dns, and nothing else is allowed on port 53.
      const dns = 'namespace kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns';
      const dnsAllowed = take(/:53(\/udp)?$/);
      for (const workload of all) {
        for (const port of ['53', '53/udp']) {
          if (!dnsAllowed.includes(`${workload.name} -> ${dns}:${port}`))
            problems.push(`${workload.name} cannot resolve names (${dns}:${port})`);
        }
      }
      problems.push(
        ...dnsAllowed
          .filter((connection) => !connection.includes(` -> ${dns}:`))
          .map((connection) => `unexpected DNS connection: ${connection}`),
      );

      // The apps: exactly the calls their manifests declare.
      const appNames = `(${context.apps.map((app) => app.name).join('|')})`;
      const apps = take(new RegExp(`^${appNames} -> ${appNames}:`));
      const portOf = (name: string) => context.apps.find((app) => app.name === name)?.port;
      const expectedApps = context.apps
        .flatMap((app) => app.calls.map((callee) => `${app.name} -> ${callee}:${portOf(callee)}`))
        .sort();
      if (JSON.stringify(apps) !== JSON.stringify(expectedApps))
        problems.push(
          `the apps may call ${JSON.stringify(apps)}, expected ${JSON.stringify(expectedApps)}`,
        );

      // Prometheus: to each app's annotated metrics port, nothing else. The collector: from each
      // app, on the OTLP ports.
      const scrapes = take(new RegExp(`^${PROMETHEUS} -> `));
      const expectedScrapes = deploymentWorkloads(objects)
        .map(
          (workload) =>
            `${PROMETHEUS} -> ${workload.name}:${workload.annotations['prometheus.io/port']}`,
        )
        .sort();
      if (JSON.stringify(scrapes) !== JSON.stringify(expectedScrapes))
        problems.push(
          `Prometheus may scrape ${JSON.stringify(scrapes)}, expected ${JSON.stringify(expectedScrapes)}`,
        );
      const otlp = take(new RegExp(` -> ${COLLECTOR}:`));
      const expectedOtlp = deploymentWorkloads(objects)
        .flatMap((workload) => OTLP_PORTS.map((port) => `${workload.name} -> ${COLLECTOR}:${port}`))
        .sort();
      if (JSON.stringify(otlp) !== JSON.stringify(expectedOtlp))
        problems.push(
          `the collector is reachable from ${JSON.stringify(otlp)}, expected ${JSON.stringify(expectedOtlp)}`,
        );

      // The public entry: the ingress controller to the gateway's HTTP port, and nothing else
      // from outside the namespace.
      const gateway = context.apps.find((app) => app.kind === 'gateway');
      const entry = gateway
        ? take(new RegExp(`^namespace .* -> ${gateway.name}:${gateway.port}$`))
        : [];
      if (entry.length !== 1)
        problems.push(`the gateway is reachable from ${JSON.stringify(entry)}`);

      // Databases: each service and its migration Job reach one database, their own.
      const databaseOf = (client: string) =>
        take(new RegExp(`^${client} -> .*:5432$`)).map((connection) => connection.split(' -> ')[1]);
      const reached = new Map<string, string>();
      const withDatabase = context.apps.filter((app) => app.database).map((app) => app.name);
      for (const service of withDatabase) {
        for (const client of [service, `${service}-migrate`]) {
          if (!names.has(client)) continue;
          const databases = databaseOf(client);
          if (databases.length !== 1)
            problems.push(
              `${client} reaches ${databases.length} databases: ${databases.join(', ')}`,
            );
          else if (reached.has(service) && reached.get(service) !== databases[0])
            problems.push(`${client} reaches ${databases[0]}, its service ${reached.get(service)}`);
          else reached.set(service, databases[0]!);
        }
      }
      if (new Set(reached.values()).size !== reached.size)
        problems.push(`the services share a database: ${[...reached.values()].join(', ')}`);
      problems.push(
        ...take(/:5432$/).map((connection) => `unexpected database connection: ${connection}`),
      );
      // Redis: the gateway's, one of them.
      const redis = take(new RegExp(`^${gateway?.name ?? 'gateway'} -> .*:6379$`));
      if (redis.length !== 1) problems.push(`the gateway reaches ${redis.length} Redis servers`);
      problems.push(
        ...take(/:6379$/).map((connection) => `unexpected Redis connection: ${connection}`),
      );
      // NATS: every app (each publishes or consumes events) to the same server(s), on the client
      // port; nothing else reaches it.
      const nats = take(new RegExp(`:${NATS_PORT}$`));
      const servers = [...new Set(nats.map((connection) => connection.split(' -> ')[1]!))];
      const expectedNats = servers
        .flatMap((server) =>
          deploymentWorkloads(objects).map((workload) => `${workload.name} -> ${server}`),
        )
        .sort();
      if (servers.length === 0 || JSON.stringify(nats) !== JSON.stringify(expectedNats))
        problems.push(
          `NATS is reachable as ${JSON.stringify(nats)}, expected from every app and nothing else`,
        );

      problems.push(...connections.map((connection) => `unexpected connection: ${connection}`));
      return problems;
    },
};

/**
 * Whether the NetworkPolicies let `from` connect to host:port, where host is one of: a Service of
 * the manifests (`nats`, `nats.reference.svc.cluster.local`), reached on the container port it
 * targets; a Service in another namespace (`<service>.<namespace>.svc...`), reached through a rule
 * naming that namespace; or an IPv4 address, reached through an ipBlock holding it. A name outside
 * the cluster cannot be checked (a policy names addresses, not host names): not reachable.
 */
function reachable(
  objects: readonly KubeObject[],
  from: Workload,
  host: string,
  port: number,
): boolean {
  const connections = allowedConnections(objects).filter((connection) =>
    connection.startsWith(`${from.name} -> `),
  );
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
    return connections.some((connection) => {
      const block = / -> ipBlock (\S+?)(?: except (\S+))?:(\d+)$/.exec(connection);
      return (
        block !== null &&
        Number(block[3]) === port &&
        inCidr(host, block[1]!) &&
        !(block[2] ?? '').split(',').some((except) => except && inCidr(host, except))
      );
    });
  }
  const [name, namespace = from.namespace, svc] = host.split('.');
  if (svc !== undefined && svc !== 'svc') return false;
  if (namespace !== from.namespace) {
    return connections.some(
      (connection) =>
        connection.startsWith(
          `${from.name} -> namespace kubernetes.io/metadata.name=${namespace} `,
        ) && connection.endsWith(`:${port}`),
    );
  }
  const service = ofKind<Service>(objects, 'Service').find(
    (candidate) => candidate.metadata.name === name,
  );
  const target = service?.spec?.ports?.find((candidate) => candidate.port === port);
  if (!service?.spec?.selector || !target) return false;
  const targetPort = target.targetPort ?? port;
  return workloads(objects)
    .filter((workload) => selects({ matchLabels: service.spec!.selector! }, workload.labels))
    .flatMap((workload) =>
      workload.pod.containers.flatMap((container) =>
        (container.ports ?? [])
          .filter((candidate) => [candidate.name, candidate.containerPort].includes(targetPort))
          .map((candidate) => `${from.name} -> ${workload.name}:${candidate.containerPort}`),
      ),
    )
    .some((connection) => connections.includes(connection));
}

/** Whether an IPv4 address is in a CIDR block (`192.0.2.0/24`; a bare address is a /32). */
function inCidr(address: string, cidr: string): boolean {
  const [base, bits = '32'] = cidr.split('/');
  const value = (ip: string) =>
    ip.split('.').reduce((number, octet) => number * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(value(address) / size) === Math.floor(value(base!) / size);
}

/** The variables of a zod object schema (also behind a refinement or a pipe). */
export function schemaKeys(schema: z.ZodType): string[] {
  const withShape = schema as unknown as {
    shape?: Record<string, unknown>;
    _zod: {
      def: {
        in?: { shape?: Record<string, unknown> };
        schema?: { shape?: Record<string, unknown> };
      };
    };
  };
  const shape = withShape.shape ?? withShape._zod.def.in?.shape ?? withShape._zod.def.schema?.shape;
  if (!shape) throw new Error('not an object schema');
  return Object.keys(shape);
}

/** A Secret's or ConfigMap's entries as text. */
function entriesOf(object: KubeObject): Record<string, string> {
  if (object.kind === 'ConfigMap') return (object as unknown as ConfigMap).data ?? {};
  const secret = object as unknown as Secret;
  return {
    ...Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([key, value]) => [
        key,
        Buffer.from(value, 'base64').toString('utf8'),
      ]),
    ),
    ...secret.stringData,
  };
}

/**
 * The environment of a workload's first container as the kubelet would assemble it: envFrom
 * ConfigMaps and Secrets, then `env` (values, ConfigMap and Secret keys). What comes from an object
 * that is not among the manifests takes the context's fallback, or is listed as unresolved.
 */
export function resolvedEnv(
  objects: readonly KubeObject[],
  workload: Workload,
  context: Pick<Context, 'fallbackEnv'>,
): { env: Record<string, string>; unresolved: string[] } {
  const container = workload.pod.containers[0]!;
  const source = (kind: string, name = '') =>
    objects.find((object) => object.kind === kind && object.metadata.name === name);
  const env: Record<string, string> = {};
  const unresolved: string[] = [];
  for (const from of container.envFrom ?? []) {
    const object = from.configMapRef
      ? source('ConfigMap', from.configMapRef.name)
      : source('Secret', from.secretRef?.name);
    if (!object) unresolved.push(`envFrom ${from.configMapRef?.name ?? from.secretRef?.name}`);
    else
      for (const [key, value] of Object.entries(entriesOf(object)))
        env[`${from.prefix ?? ''}${key}`] = value;
  }
  for (const variable of container.env ?? []) {
    const value = valueOf(variable);
    if (value === undefined) unresolved.push(variable.name);
    else env[variable.name] = value;
  }
  return { env, unresolved };

  function valueOf(variable: EnvVar): string | undefined {
    if (variable.value !== undefined) return variable.value;
    const reference = variable.valueFrom?.secretKeyRef ?? variable.valueFrom?.configMapKeyRef;
    const kind = variable.valueFrom?.secretKeyRef ? 'Secret' : 'ConfigMap';
    const object = reference && source(kind, reference.name);
    return (
      (object && reference ? entriesOf(object)[reference.key] : undefined) ??
      context.fallbackEnv?.(workload.name, variable.name)
    );
  }
}

/** A Deployment's config as its app parses it, when its environment is complete and valid. */
function parsedConfig(
  objects: readonly KubeObject[],
  workload: Workload,
  context: Context,
): ({ NODE_ENV: string; DRAIN_DELAY_MS?: number } & Record<string, unknown>) | undefined {
  const schema = context.configSchemas[workload.name];
  if (!schema) return undefined;
  const result = schema.safeParse(resolvedEnv(objects, workload, context).env);
  return result.success ? (result.data as { NODE_ENV: string }) : undefined;
}
