// Renders a kustomization the way `kubectl kustomize` does for the subset Trellis's
// own manifests use (deploy/kubernetes/ and examples/shop/kubernetes/): `resources`
// (files of YAML documents and folders with their own kustomization.yaml) and
// `namespace`. Anything else in a kustomization is refused by name rather than
// silently ignored, so the output never differs from kustomize's without an error;
// test/k8s/manifests.test.ts compares the two when kubectl is installed.
// `trellis install` prints this, so installing needs no kubectl to print.
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

/** The install manifests' folder: deploy/kubernetes/ of this package. */
export const DEPLOY_DIR = fileURLToPath(new URL('../../../deploy/kubernetes', import.meta.url));

/** A Kubernetes object as read from YAML. */
export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'namespace']);

// Kinds that live outside namespaces: kustomize's `namespace` leaves them alone.
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
  'MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration',
  'GatewayClass',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
]);

// kustomize's legacy order: what others depend on first (namespaces, CRDs, identities,
// config), workloads in the middle, webhooks last so they never intercept the install.
const FIRST = [
  'Namespace',
  'ResourceQuota',
  'StorageClass',
  'CustomResourceDefinition',
  'ServiceAccount',
  'PodSecurityPolicy',
  'Role',
  'ClusterRole',
  'RoleBinding',
  'ClusterRoleBinding',
  'ConfigMap',
  'Secret',
  'Endpoints',
  'Service',
  'LimitRange',
  'PriorityClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'Deployment',
  'StatefulSet',
  'CronJob',
  'PodDisruptionBudget',
];
const LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

function rank(kind: string): number {
  const first = FIRST.indexOf(kind);
  if (first >= 0) return first;
  const last = LAST.indexOf(kind);
  return last >= 0 ? FIRST.length + 1 + last : FIRST.length;
}

/** A problem with a kustomization or one of its files. */
export class ManifestError extends Error {}

async function readObjects(file: string): Promise<K8sObject[]> {
  const text = await readFile(file, 'utf8');
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new ManifestError(`${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    const object = value as Partial<K8sObject>;
    if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string' || typeof object.metadata?.name !== 'string') {
      throw new ManifestError(`${file}: every document needs apiVersion, kind and metadata.name`);
    }
    objects.push(object as K8sObject);
  }
  return objects;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    throw new ManifestError(`${path}: no such file or folder`);
  }
}

/** The objects of the kustomization in `dir`, in kustomize's order. */
export async function buildKustomization(dir: string): Promise<K8sObject[]> {
  const objects = await collect(resolve(dir), new Set());
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    if (seen.has(id)) throw new ManifestError(`${dir}: ${o.kind} ${o.metadata.name} is defined twice`);
    seen.add(id);
  }
  // Within a rank, as kustomize: by group/version and kind, namespace, then name.
  const key = (o: K8sObject): string => `${o.apiVersion}\u0000${o.kind}\u0000${o.metadata.namespace ?? ''}\u0000${o.metadata.name}`;
  return objects.sort((a, b) => rank(a.kind) - rank(b.kind) || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

async function collect(dir: string, visiting: Set<string>): Promise<K8sObject[]> {
  if (visiting.has(dir)) throw new ManifestError(`${dir}: kustomization includes itself`);
  visiting.add(dir);
  const file = join(dir, 'kustomization.yaml');
  const kustomization = await readKustomization(file);
  const objects: K8sObject[] = [];
  for (const entry of kustomization.resources ?? []) {
    if (typeof entry !== 'string' || /^[a-z]+:\/\//.test(entry))
      throw new ManifestError(`${file}: resources must be local paths (got ${JSON.stringify(entry)})`);
    const path = resolve(dir, entry);
    objects.push(...((await isDirectory(path)) ? await collect(path, visiting) : await readObjects(path)));
  }
  visiting.delete(dir);
  if (typeof kustomization.namespace === 'string') {
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = kustomization.namespace;
  }
  return objects;
}

async function readKustomization(file: string): Promise<{ resources?: unknown[]; namespace?: unknown }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ManifestError(`${file}: no kustomization.yaml`);
  }
  const doc = parseAllDocuments(text)[0];
  const value = (doc?.toJS() ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(value)) if (!SUPPORTED.has(key)) throw new ManifestError(`${file}: ${key} is not supported by trellis's renderer`);
  if (value.resources !== undefined && !Array.isArray(value.resources)) throw new ManifestError(`${file}: resources must be a list`);
  return value as { resources?: unknown[]; namespace?: unknown };
}

/** Objects as one multi-document YAML stream, as `kubectl apply -f -` reads it. */
export function toYamlStream(objects: readonly K8sObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

/** Options of the install manifests. */
export interface InstallOptions {
  /** Leave out the Gateway API CRDs (the cluster has them already). */
  withoutGatewayApi?: boolean;
}

/** The objects `trellis install` applies. */
export async function installObjects(options: InstallOptions = {}): Promise<K8sObject[]> {
  const objects = await buildKustomization(DEPLOY_DIR);
  if (!options.withoutGatewayApi) return objects;
  return objects.filter((o) => !(o.kind === 'CustomResourceDefinition' && o.metadata.name.endsWith('.gateway.networking.k8s.io')));
}
