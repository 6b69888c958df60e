// The install manifests (deploy/kubernetes/, `trellis install`): every object valid
// against the Kubernetes OpenAPI schemas, the names of the Kubernetes contract, a
// hardened least-privilege control plane, and Trellis's renderer giving exactly what
// `kubectl kustomize` gives (when kubectl is installed).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { buildKustomization, DEPLOY_DIR, installObjects, type K8sObject, ManifestError } from '../../src/k8s/manifests.js';
import { k8sProblems } from '../helpers/k8s-validate.js';
import { kubectlKustomize, kubectlMissing } from '../helpers/kustomize.js';
import { REPO, TRELLIS } from '../helpers/mesh-run.js';

// biome-ignore lint/suspicious/noExplicitAny: the tests probe deep into manifests
type Any = Record<string, any>;

function find(objects: readonly K8sObject[], kind: string, name: string): Any {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name}`);
  return found as Any;
}

function trellis(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [TRELLIS, ...args],
      { cwd: REPO, env, timeout: 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A comparable identity of an object. */
export function idOf(o: Any): string {
  return `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
}

describe('deploy/kubernetes', () => {
  let objects: K8sObject[];
  before(async () => {
    objects = await installObjects();
  });

  it('validates every object against the Kubernetes OpenAPI schemas', async () => {
    assert.ok(objects.length >= 25);
    for (const o of objects) assert.deepEqual(await k8sProblems(o), [], idOf(o));
  });

  it('is the namespace, CRDs, RBAC, control plane and webhook of the contract, in apply order', () => {
    assert.equal(objects[0]!.kind, 'Namespace');
    assert.equal(objects.at(-1)!.kind, 'MutatingWebhookConfiguration');
    const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => o.metadata.name);
    for (const name of [
      'meshes.trellis.dev',
      'authorizationpolicies.trellis.dev',
      'httproutes.gateway.networking.k8s.io',
      'gateways.gateway.networking.k8s.io',
      'grpcroutes.gateway.networking.k8s.io',
      'tcproutes.gateway.networking.k8s.io',
      'tlsroutes.gateway.networking.k8s.io',
      'referencegrants.gateway.networking.k8s.io',
    ])
      assert.ok(crds.includes(name), name);
    const firstNamespaced = objects.findIndex((o) => o.metadata.namespace !== undefined);
    assert.ok(
      objects.slice(firstNamespaced).every((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'Namespace'),
      'namespace and CRDs before what uses them',
    );
    assert.equal(find(objects, 'Service', 'trellis-control').spec.ports[0].port, 15000);
    assert.deepEqual(find(objects, 'Service', 'trellis-webhook').spec.ports[0], { name: 'https', port: 443, targetPort: 'webhook' });
    const hook = find(objects, 'MutatingWebhookConfiguration', 'trellis-sidecar-injector').webhooks[0];
    assert.equal(hook.failurePolicy, 'Ignore');
    assert.equal(hook.sideEffects, 'None');
    assert.deepEqual(hook.admissionReviewVersions, ['v1']);
    assert.deepEqual(hook.clientConfig.service, { name: 'trellis-webhook', namespace: 'trellis-system', path: '/inject', port: 443 });
    assert.deepEqual(hook.namespaceSelector, { matchLabels: { 'trellis.dev/inject': 'enabled' } });
    assert.deepEqual(hook.objectSelector.matchExpressions, [{ key: 'trellis.dev/inject', operator: 'NotIn', values: ['disabled'] }]);
  });

  it('runs the control plane as 2 hardened replicas with probes and resources', () => {
    const deployment = find(objects, 'Deployment', 'trellis-control');
    assert.equal(deployment.metadata.namespace, 'trellis-system');
    assert.equal(deployment.spec.replicas, 2);
    const pod = deployment.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'trellis-control');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    const control = pod.containers.find((c: Any) => c.name === 'control');
    assert.deepEqual(control.args, ['control', '--kubernetes', '--admin', '0.0.0.0:15000', '--state-dir', '/var/lib/trellis']);
    const webhook = pod.containers.find((c: Any) => c.name === 'webhook');
    assert.deepEqual(webhook.args.slice(0, 3), ['webhook', '--listen', '0.0.0.0:9443']);
    // The leader writes the Secret: the pod starts without it (the webhook loads it when it appears).
    assert.deepEqual(pod.volumes.find((v: Any) => v.name === 'webhook-tls').secret, { secretName: 'trellis-webhook-tls', optional: true });
    for (const c of pod.containers) {
      assert.equal(c.image, 'ghcr.io/trellis-mesh/trellis:0.1.0');
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], c.name);
      assert.ok(c.readinessProbe && c.livenessProbe, c.name);
      assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, c.name);
    }
  });

  it('grants least privilege: read-only cluster-wide but for TokenReviews and route status, writes only to its Lease, CA and webhook TLS secrets and the injection webhook caBundle', () => {
    const role = find(objects, 'ClusterRole', 'trellis-control');
    for (const rule of role.rules) {
      assert.ok(!rule.verbs.includes('*') && !rule.resources.includes('*') && !rule.apiGroups.includes('*'), JSON.stringify(rule));
      if (rule.resources.includes('tokenreviews')) assert.deepEqual(rule.verbs, ['create']);
      else if (rule.resources.some((r: string) => r.endsWith('/status'))) {
        // The status subresource of the routes and Gateways only, updated (src/k8s/source/route-status.ts,
        // gateway-status.ts), never the objects themselves.
        assert.deepEqual(rule.apiGroups, ['gateway.networking.k8s.io']);
        assert.deepEqual(rule.resources, [
          'httproutes/status',
          'grpcroutes/status',
          'tcproutes/status',
          'tlsroutes/status',
          'gateways/status',
          'gatewayclasses/status',
        ]);
        assert.deepEqual(rule.verbs, ['update']);
      } else if (rule.resources.includes('mutatingwebhookconfigurations')) {
        // The injection webhook's caBundle (src/k8s/source/webhook-tls.ts): that one configuration.
        assert.deepEqual(rule, {
          apiGroups: ['admissionregistration.k8s.io'],
          resources: ['mutatingwebhookconfigurations'],
          resourceNames: ['trellis-sidecar-injector'],
          verbs: ['get', 'update'],
        });
      } else assert.deepEqual(rule.verbs, ['get', 'list', 'watch']);
      assert.ok(!rule.resources.includes('secrets'), 'secrets only in the role of their own');
    }
    assert.ok(
      role.rules.some((r: Any) => r.apiGroups.includes('gateway.networking.k8s.io') && r.resources.includes('gateways')),
      'Gateways are read',
    );
    // Gateways' TLS Secrets: read, in a role of their own, never written cluster-wide.
    assert.deepEqual(find(objects, 'ClusterRole', 'trellis-control-tls-secrets').rules, [
      { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
    ]);
    const binding = find(objects, 'ClusterRoleBinding', 'trellis-control-tls-secrets');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'trellis-control-tls-secrets' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'trellis-control', namespace: 'trellis-system' }]);
    for (const o of objects.filter((x) => x.kind === 'ClusterRole') as Any[])
      for (const rule of o.rules) if (rule.resources.includes('secrets')) assert.deepEqual(rule.verbs, ['get', 'list', 'watch'], o.metadata.name);
    const local = find(objects, 'Role', 'trellis-control');
    assert.equal(local.metadata.namespace, 'trellis-system');
    for (const rule of local.rules) {
      if (rule.verbs.includes('get') || rule.verbs.includes('update'))
        assert.ok(
          rule.resourceNames?.length > 0 && rule.resourceNames.every((n: string) => ['trellis-control', 'trellis-ca', 'trellis-webhook-tls'].includes(n)),
          JSON.stringify(rule),
        );
      else assert.deepEqual(rule.verbs, ['create']);
    }
    assert.equal(find(objects, 'ClusterRoleBinding', 'trellis-control').subjects[0].namespace, 'trellis-system');
  });

  it('is exactly what `kubectl kustomize deploy/kubernetes` builds', async (t) => {
    if (kubectlMissing) return t.skip(kubectlMissing);
    const theirs = await kubectlKustomize(DEPLOY_DIR);
    assert.deepEqual(theirs.map(idOf), objects.map(idOf));
    assert.deepEqual(theirs, JSON.parse(JSON.stringify(objects)));
  });
});

describe('trellis install', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-install-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the build of deploy/kubernetes as one YAML stream', async () => {
    const { code, stdout } = await trellis(['install']);
    assert.equal(code, 0);
    const printed = parseAllDocuments(stdout).map((d) => d.toJS());
    assert.deepEqual(printed, JSON.parse(JSON.stringify(await installObjects())));
  });

  it('leaves out the Gateway API CRDs with --without-gateway-api', async () => {
    const { code, stdout } = await trellis(['install', '--without-gateway-api']);
    assert.equal(code, 0);
    assert.ok(!stdout.includes('gateway.networking.k8s.io_') && !stdout.includes('name: httproutes.gateway.networking.k8s.io'));
    assert.ok(stdout.includes('name: meshes.trellis.dev'));
  });

  it('--apply pipes them to `kubectl apply --server-side -f -` and returns its exit code', async () => {
    // A kubectl stand-in on PATH records its arguments and stdin.
    const fake = join(dir, 'kubectl');
    await writeFile(fake, `#!/bin/sh\necho "$@" > "${dir}/args"\ncat > "${dir}/stdin"\nexit 3\n`);
    await chmod(fake, 0o755);
    const { code } = await trellis(['install', '--apply'], { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH}` });
    assert.equal(code, 3);
    assert.equal((await readFile(join(dir, 'args'), 'utf8')).trim(), 'apply --server-side -f -');
    assert.equal(await readFile(join(dir, 'stdin'), 'utf8'), (await trellis(['install'])).stdout);
  });

  it('says so when kubectl cannot be run', async () => {
    const { code, stderr } = await trellis(['install', '--apply'], { ...process.env, PATH: dir === '' ? '' : join(dir, 'nothing-here') });
    assert.equal(code, 1);
    assert.match(stderr, /cannot run kubectl/);
  });
});

describe('buildKustomization', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-kustomize-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses what it does not render instead of ignoring it', async () => {
    await writeFile(join(dir, 'kustomization.yaml'), 'resources: [a.yaml]\npatches: []\n');
    await assert.rejects(buildKustomization(dir), (e: Error) => e instanceof ManifestError && /patches is not supported/.test(e.message));
  });

  it('refuses remote resources, missing files and objects defined twice', async () => {
    await writeFile(join(dir, 'kustomization.yaml'), 'resources: ["https://example.com/x.yaml"]\n');
    await assert.rejects(buildKustomization(dir), /must be local paths/);
    await writeFile(join(dir, 'kustomization.yaml'), 'resources: [missing.yaml]\n');
    await assert.rejects(buildKustomization(dir), /no such file/);
    await writeFile(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n');
    await writeFile(join(dir, 'kustomization.yaml'), 'resources: [a.yaml]\n');
    await assert.rejects(buildKustomization(dir), /defined twice/);
  });

  it('sets the namespace on namespaced objects only', async () => {
    await writeFile(
      join(dir, 'a.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n',
    );
    await writeFile(join(dir, 'kustomization.yaml'), 'namespace: shop\nresources: [a.yaml]\n');
    const built = await buildKustomization(dir);
    assert.deepEqual(
      built.map((o) => [o.kind, o.metadata.namespace]),
      [
        ['Namespace', undefined],
        ['ConfigMap', 'shop'],
      ],
    );
  });
});
