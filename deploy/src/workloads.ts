import type { CronJob, Job } from 'kubernetes-types/batch/v1';
import type { DaemonSet, Deployment, StatefulSet } from 'kubernetes-types/apps/v1';
import type { PodSpec } from 'kubernetes-types/core/v1';
import type { LabelSelector } from 'kubernetes-types/meta/v1';
import type { KubeObject } from './objects';

/** A pod template and what owns it: every pod the manifests can start comes from one of these. */
export interface Workload {
  kind: string;
  name: string;
  namespace: string;
  /** The labels its pods carry. */
  labels: Record<string, string>;
  /** The annotations its pods carry (`prometheus.io/scrape`, ...). */
  annotations: Record<string, string>;
  pod: PodSpec;
}

export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'];

/**
 * Every pod template among the objects. Objects are validated against the API types beforehand (see
 * schema.ts), which is what makes reading them through those types sound.
 */
export function workloads(objects: readonly KubeObject[]): Workload[] {
  return objects.flatMap((object): Workload[] => {
    const template =
      object.kind === 'CronJob'
        ? (object as CronJob).spec?.jobTemplate.spec?.template
        : WORKLOAD_KINDS.includes(object.kind)
          ? (object as Deployment | StatefulSet | DaemonSet | Job).spec?.template
          : undefined;
    if (!template?.spec) return [];
    return [
      {
        kind: object.kind,
        name: object.metadata.name,
        namespace: object.metadata.namespace ?? 'default',
        labels: template.metadata?.labels ?? {},
        annotations: template.metadata?.annotations ?? {},
        pod: template.spec,
      },
    ];
  });
}

/** Whether a label selector selects these labels (an empty selector selects everything). */
export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
  const matchLabels = Object.entries(selector.matchLabels ?? {}).every(
    ([key, value]) => labels[key] === value,
  );
  const matchExpressions = (selector.matchExpressions ?? []).every(
    ({ key, operator, values = [] }) => {
      switch (operator) {
        case 'In':
          return key in labels && values.includes(labels[key]!);
        case 'NotIn':
          return !(key in labels) || !values.includes(labels[key]!);
        case 'Exists':
          return key in labels;
        case 'DoesNotExist':
          return !(key in labels);
        default:
          throw new Error(`unknown label selector operator ${operator}`);
      }
    },
  );
  return matchLabels && matchExpressions;
}

/** `a=b,c in (d,e)`: a selector as text, for messages and edge names. */
export function describeSelector(selector: LabelSelector): string {
  return [
    ...Object.entries(selector.matchLabels ?? {}).map(([key, value]) => `${key}=${value}`),
    ...(selector.matchExpressions ?? []).map(
      ({ key, operator, values = [] }) => `${key} ${operator} (${values.join(',')})`,
    ),
  ].join(',');
}

/** Parses a resource quantity (`250m`, `1`, `160Mi`, `1G`) into its base unit (cores, bytes). */
export function quantity(value: string | number): number {
  const text = String(value);
  const match = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(text);
  if (!match) throw new Error(`not a resource quantity: ${text}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(match[1]) * (match[2] ? factor[match[2]]! : 1);
}
