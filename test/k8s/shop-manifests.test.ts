// The shop on Kubernetes (examples/shop/kubernetes/): each topology's build is valid
// against the Kubernetes OpenAPI schemas (and Trellis's schema for its own kinds and the
// Gateway API's), carries exactly the routes and policies of the local topology file,
// gives each principal a ServiceAccount its workload runs as, and is what `kubectl
// kustomize` builds (when kubectl is installed).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { buildKustomization, type K8sObject } from '../../src/k8s/manifests.js';
import { installObjects } from '../../src/k8s/manifests.js';
import { crdProblems, k8sProblems } from '../helpers/k8s-validate.js';
import { kubectlKustomize, kubectlMissing } from '../helpers/kustomize.js';
import { REPO } from '../helpers/mesh-run.js';

const SHOP = join(REPO, 'examples/shop');
const MESH_KINDS = /^(trellis\.dev|gateway\.networking\.k8s\.io)\//;

// biome-ignore lint/suspicious/noExplicitAny: the tests probe deep into manifests
type Any = Record<string, any>;

async function readDocs(file: string): Promise<Any[]> {
  return parseAllDocuments(await readFile(file, 'utf8'))
    .map((d) => d.toJS() as Any)
    .filter((d) => d !== null);
}

/** The routes and policies of a local topology file, with its includes, as Kubernetes will hold them. */
async function localMeshObjects(n: number): Promise<Any[]> {
  const docs = await readDocs(join(SHOP, `topology-${n}.yaml`));
  const mesh = docs.find((d) => d.kind === 'Mesh')!;
  const all = [...docs];
  for (const include of mesh.spec.include ?? []) all.push(...(await readDocs(join(SHOP, include))));
  return all
    .filter((d) => MESH_KINDS.test(d.apiVersion) && d.kind !== 'Mesh')
    .map((d) => JSON.parse(JSON.stringify(d).replaceAll('/ns/default/sa/', '/ns/shop/sa/')));
}

function withoutClusterDetails(o: Any): Any {
  const copy = structuredClone(o);
  delete copy.metadata.namespace;
  if (copy.kind === 'Gateway') delete copy.spec.gatewayClassName;
  return copy;
}

const key = (o: Any): string => `${o.kind}/${o.metadata.name}`;

for (const n of [1, 2, 3]) {
  describe(`examples/shop/kubernetes/topology-${n}`, () => {
    const dir = join(SHOP, 'kubernetes', `topology-${n}`);

    it('validates every object against the Kubernetes OpenAPI schemas and Trellis schema', async () => {
      const objects = await buildKustomization(dir);
      for (const o of objects) assert.deepEqual(await k8sProblems(o), [], key(o));
      assert.ok(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'shop'));
    });

    it('validates its Gateway API and trellis.dev objects against the installed CRDs', async () => {
      const crds = (await installObjects()).filter((o) => o.kind === 'CustomResourceDefinition');
      const objects = (await buildKustomization(dir)).filter((o) => MESH_KINDS.test(o.apiVersion));
      assert.ok(objects.length > 0);
      for (const o of objects) assert.deepEqual(await crdProblems(o, crds), [], key(o));
    });

    it(`holds the same HTTPRoutes, Gateway and trellis.dev policies as topology-${n}.yaml`, async () => {
      const objects = await buildKustomization(dir);
      const ours = objects
        .filter((o) => MESH_KINDS.test(o.apiVersion) && o.kind !== 'Mesh')
        .map(withoutClusterDetails)
        .sort((a, b) => key(a).localeCompare(key(b)));
      const local = (await localMeshObjects(n)).sort((a, b) => key(a).localeCompare(key(b)));
      assert.deepEqual(ours, local);
      assert.ok(ours.some((o) => o.kind === 'AuthorizationPolicy'));
      assert.ok(ours.some((o) => o.kind === 'Gateway'));
    });

    it('runs every workload an AuthorizationPolicy names as its own ServiceAccount', async () => {
      const objects = (await buildKustomization(dir)) as (K8sObject & Any)[];
      const accounts = new Set(objects.filter((o) => o.kind === 'ServiceAccount').map((o) => o.metadata.name));
      const runAs = new Set(objects.filter((o) => o.kind === 'Deployment').map((o) => o.spec.template.spec.serviceAccountName));
      const principals = objects
        .filter((o) => o.kind === 'AuthorizationPolicy')
        .flatMap((o) => JSON.stringify(o.spec).match(/cluster\.local\/ns\/[a-z0-9-]+\/sa\/[a-z0-9-]+/g) ?? []);
      assert.ok(principals.length > 0);
      for (const p of principals) {
        const [, ns, sa] = /ns\/(.+)\/sa\/(.+)$/.exec(p)!;
        assert.equal(ns, 'shop', p);
        assert.ok(accounts.has(sa!) && runAs.has(sa!), p);
      }
    });

    it('runs its ingress gateway as the Gateway’s proxy: --service and the ServiceAccount are the Gateway’s name', async () => {
      const objects = (await buildKustomization(dir)) as (K8sObject & Any)[];
      const gateway = objects.find((o) => o.kind === 'Gateway')!;
      const deployment = objects.find((o) => o.kind === 'Deployment' && o.spec.template.spec.containers[0].args?.includes('--gateway'))!;
      const args: string[] = deployment.spec.template.spec.containers[0].args;
      assert.equal(args[args.indexOf('--service') + 1], gateway.metadata.name);
      // The control plane gives a Gateway's certificates only to the ServiceAccount named as it.
      assert.equal(deployment.spec.template.spec.serviceAccountName, gateway.metadata.name);
    });

    it('is exactly what `kubectl kustomize` builds', async (t) => {
      if (kubectlMissing) return t.skip(kubectlMissing);
      assert.deepEqual(await kubectlKustomize(dir), JSON.parse(JSON.stringify(await buildKustomization(dir))));
    });
  });
}
