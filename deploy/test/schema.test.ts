import { join } from 'node:path';
import { buildOverlay, kustomize, KUBERNETES_DIR, OVERLAYS, type KubeObject } from '../src/objects';
import { validateObjects } from '../src/schema';

/** A small valid Deployment, for the checks on in-memory objects below. */
function deployment(): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'example', labels: { app: 'example' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'example' } },
      template: {
        metadata: { labels: { app: 'example' } },
        spec: {
          containers: [
            {
              name: 'example',
              image: 'example:1',
              ports: [{ name: 'http', containerPort: 3000 }],
              resources: { limits: { memory: '128Mi' } },
              readinessProbe: { httpGet: { path: '/healthz', port: 'http' } },
            },
          ],
        },
      },
    },
  };
}

describe('validation against the Kubernetes API types', () => {
  it('accepts a valid object', () => {
    expect(validateObjects([deployment()])).toEqual([]);
  });

  it('refuses an unknown field at any depth, naming it and where it is', () => {
    const typo = deployment() as any;
    typo.spec.template.spec.containers[0].imagee = 'example:1';
    expect(validateObjects([typo])).toEqual([
      expect.objectContaining({
        object: 'Deployment/example',
        path: 'spec.template.spec.containers[0].imagee',
        message: expect.stringContaining("'imagee' does not exist in type 'Container'"),
      }),
    ]);
    const deeper = deployment() as any;
    deeper.spec.template.spec.containers[0].readinessProbe.httpGet.paht = '/readyz';
    expect(validateObjects([deeper])).toEqual([
      expect.objectContaining({
        path: 'spec.template.spec.containers[0].readinessProbe.httpGet.paht',
      }),
    ]);
    const top = { ...deployment(), sepc: {} };
    expect(validateObjects([top])).toEqual([expect.objectContaining({ path: 'sepc' })]);
  });

  it('refuses a wrong type and a missing required field', () => {
    const wrongType = deployment() as any;
    wrongType.spec.replicas = '2';
    expect(validateObjects([wrongType])).toEqual([
      expect.objectContaining({
        path: 'spec.replicas',
        message: expect.stringContaining("'string' is not assignable to type 'number'"),
      }),
    ]);
    const missing = deployment() as any;
    delete missing.spec.template.spec.containers[0].name;
    expect(validateObjects([missing])).toEqual([
      expect.objectContaining({
        message: expect.stringContaining("Property 'name' is missing"),
      }),
    ]);
  });

  it('refuses a kind or an apiVersion the API does not have', () => {
    expect(validateObjects([{ ...deployment(), kind: 'Deploymnet' }])).toEqual([
      expect.objectContaining({
        object: 'Deploymnet/example',
        message: expect.stringContaining('Deploymnet'),
      }),
    ]);
    expect(validateObjects([{ ...deployment(), apiVersion: 'apps/v2' }])).not.toEqual([]);
    expect(validateObjects([{ ...deployment(), apiVersion: 'extensions/v1beta1' }])).not.toEqual(
      [],
    );
  });

  it('reports every invalid object of a batch, each by name', () => {
    const typo = deployment() as any;
    typo.metadata.name = 'typo';
    typo.spec.strategy = { tpye: 'Recreate' };
    const problems = validateObjects([deployment(), typo, { ...deployment(), kind: 'Nope' }]);
    expect(problems.map((problem) => problem.object).sort()).toEqual([
      'Deployment/typo',
      'Nope/example',
    ]);
  });
});

describe.each(OVERLAYS)('overlays/%s', (overlay) => {
  it('builds with kubectl kustomize, and every object is valid against the Kubernetes API types', () => {
    const objects = buildOverlay(overlay);
    expect(objects.length).toBeGreaterThan(10);
    expect(validateObjects(objects)).toEqual([]);
    // And the same check finds a typo in any of its workloads.
    const typos = structuredClone(objects) as any[];
    const templates = typos.filter((object) => object.spec?.template?.spec);
    for (const object of templates) object.spec.template.spec.containers[0].imagee = 'x';
    expect(validateObjects(typos).map(({ object, path }) => `${object} ${path}`)).toEqual(
      templates.map(
        (object) =>
          `${object.kind}/${object.metadata.name} spec.template.spec.containers[0].imagee`,
      ),
    );
  });
});

it('the base builds on its own and is valid', () => {
  expect(validateObjects(kustomize(join(KUBERNETES_DIR, 'base')))).toEqual([]);
});
