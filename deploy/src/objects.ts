import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** What every Kubernetes object has; the rest is read field by field where a check needs it. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export const KUBERNETES_DIR = join(__dirname, '..', 'kubernetes');

/** Every overlay there is (a new one is checked without being listed anywhere). */
export const OVERLAYS = readdirSync(join(KUBERNETES_DIR, 'overlays'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();

/**
 * `kubectl kustomize <dir>`: the objects an overlay (or the base) consists of, as `kubectl apply -k`
 * would send them. kubectl (1.27 or later, which bundles kustomize 5) is required.
 */
export function kustomize(dir: string): KubeObject[] {
  let output: string;
  try {
    output = execFileSync('kubectl', ['kustomize', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new Error(
        'kubectl is not installed: the Kubernetes manifests are built with `kubectl kustomize` ' +
          '(kubectl 1.27 or later; https://kubernetes.io/docs/tasks/tools/). Install it and run again.',
        { cause: error },
      );
    }
    throw new Error(`kubectl kustomize ${dir} failed:\n${failure.stderr ?? failure.message}`, {
      cause: error,
    });
  }
  return parseAllDocuments(output)
    .map((document) => {
      if (document.errors.length > 0) throw document.errors[0]!;
      return document.toJS() as KubeObject | null;
    })
    .filter((object): object is KubeObject => object !== null);
}

export function buildOverlay(name: string): KubeObject[] {
  return kustomize(join(KUBERNETES_DIR, 'overlays', name));
}
