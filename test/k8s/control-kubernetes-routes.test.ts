// Routes and policies from the Kubernetes API (`trellis control --kubernetes`), against the
// API stand-in through @kubernetes/client-node: an HTTPRoute created, changed and deleted
// in the API changes what a caller's snapshot holds; an AuthorizationPolicy reaches the
// callee's; an object that fails the loader's checks (schema or cross-resource, or plain
// junk) is skipped with a log line naming it while the others apply; a policy on a
// skipped route is skipped too (and counted in /metrics); the files' services are
// checked against and a file's route wins a name; a reload of the files checks again.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { kubernetesControlOptions } from '../../src/control/sources/kubernetes-control.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';

const GW = 'gateway.networking.k8s.io/v1';

function tlsSecret(name: string, namespace: string, cert: string, key: string): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: { name, namespace },
    data: { 'tls.crt': Buffer.from(cert).toString('base64'), 'tls.key': Buffer.from(key).toString('base64') },
  };
}
const TRELLIS = 'trellis.dev/v1alpha1';

function pod(name: string, sa: string, version: string): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels: { version } },
    spec: { serviceAccountName: sa, containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] },
  };
}

function slice(service: string, pods: readonly [string, string][]): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-abc`, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: pods.map(([podName, address]) => ({
      addresses: [address],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: podName, namespace: 'shop' },
    })),
  };
}

function canary(v1: number, v2: number, name = 'backend-canary'): StandInObject {
  return {
    apiVersion: GW,
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop', uid: 'u-1', generation: 3, creationTimestamp: '2026-01-01T00:00:00Z', managedFields: [{ manager: 'kubectl' }] },
    spec: {
      parentRefs: [{ kind: 'Service', group: '', name: 'backend' }],
      rules: [
        {
          backendRefs: [
            { name: 'backend-v1', weight: v1 },
            { name: 'backend-v2', weight: v2 },
          ],
        },
      ],
    },
    status: { parents: [] },
  };
}

describe('routes and policies from the kubernetes API', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];
  const clients: ControlClient[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('frontend-token', { username: 'system:serviceaccount:shop:frontend', audiences: ['trellis'] });
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:backend', audiences: ['trellis'] });
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply(httpService('postgres', 'shop', 'tcp'));
    api.apply(pod('backend-v1-0', 'backend', 'v1'));
    api.apply(pod('backend-v2-0', 'backend', 'v2'));
    api.apply(pod('frontend-0', 'frontend', 'v1'));
    api.apply(
      slice('backend', [
        ['backend-v1-0', '10.0.0.1'],
        ['backend-v2-0', '10.0.0.2'],
      ]),
    );
    api.apply(slice('frontend', [['frontend-0', '10.0.0.3']]));
    plane = await startKubernetesControlPlane(api, { log: (line) => void logs.push(line) });
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  const join = (service: string, token: string): Snapshot[] => joinControlPlane(plane, proxyInfo(service), token, clients).applied;

  const weights = (applied: Snapshot[]): string =>
    JSON.stringify(applied.at(-1)?.upstreams['backend.shop']?.routes.flatMap((r) => r.backends.map((b) => [b.backend, b.weight])) ?? null);

  it('an HTTPRoute created, changed and deleted in the API changes the weights in a caller’s snapshot', async () => {
    const frontend = join('frontend', 'frontend-token');
    await eventually(() => frontend.length > 0, { what: 'the frontend proxy to get a snapshot' });
    assert.equal(weights(frontend), '[]', 'no route yet');

    api.apply(canary(90, 10));
    await eventually(() => weights(frontend) === '[["backend-v1.shop",90],["backend-v2.shop",10]]', { what: `90/10 in the snapshot (${weights(frontend)})` });
    const snapshot = frontend.at(-1)!.upstreams['backend.shop']!;
    assert.deepEqual(
      snapshot.backends['backend-v2.shop']?.endpoints.map((e) => e.id),
      ['backend.shop@10.0.0.2'],
    );

    // Only the status changes (the API server and controllers write it), and a route that is skipped comes:
    // the config in force stays the same object (nothing recompiles).
    const config = plane.model.config;
    api.apply({ ...canary(90, 10), status: { parents: [{ parentRef: { name: 'backend' }, conditions: [] }] } });
    api.apply({
      ...canary(1, 1, 'marker'),
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'nope' }], rules: [{ backendRefs: [{ name: 'backend' }] }] },
    });
    await eventually(() => plane.kubernetes!.skipped.some((s) => s.object === 'kubernetes:HTTPRoute/shop/marker'), { what: 'the marker route skipped' });
    assert.equal(plane.model.config, config);
    api.delete(GW, 'HTTPRoute', 'marker', 'shop');

    api.apply(canary(50, 50));
    await eventually(() => weights(frontend) === '[["backend-v1.shop",50],["backend-v2.shop",50]]', { what: `50/50 in the snapshot (${weights(frontend)})` });

    api.delete(GW, 'HTTPRoute', 'backend-canary', 'shop');
    await eventually(() => weights(frontend) === '[]', { what: `the route to be gone (${weights(frontend)})` });
  });

  it('an AuthorizationPolicy from the API is in the callee’s snapshot', async () => {
    api.apply({
      apiVersion: TRELLIS,
      kind: 'AuthorizationPolicy',
      metadata: { name: 'backend-from-frontend', namespace: 'shop' },
      spec: {
        targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
        action: 'ALLOW',
        rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }],
      },
    });
    const backend = join('backend', 'backend-token');
    const policies = (): string => JSON.stringify(backend.at(-1)?.authorization?.policies.map((p) => [p.name, p.action]) ?? null);
    await eventually(() => policies() === '[["shop/backend-from-frontend","ALLOW"]]', { what: `the policy in the backend's snapshot (${policies()})` });
    api.delete(TRELLIS, 'AuthorizationPolicy', 'backend-from-frontend', 'shop');
    await eventually(() => policies() === 'null' || policies() === '[]', { what: `the policy to be gone (${policies()})` });
  });

  it('a TCPRoute (served at v1 by the install’s CRD) steers a tcp service', async () => {
    const frontend = join('frontend', 'frontend-token');
    const routes = (): string => JSON.stringify(frontend.at(-1)?.upstreams['postgres.shop']?.routes.map((r) => r.name) ?? null);
    await eventually(() => routes() === '[]', { what: 'postgres without routes' });
    api.apply({
      apiVersion: GW,
      kind: 'TCPRoute',
      metadata: { name: 'postgres', namespace: 'shop' },
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'postgres' }], rules: [{ backendRefs: [{ name: 'postgres', port: 80 }] }] },
    });
    await eventually(() => routes() === '["shop/postgres/rule/0"]', { what: `the TCPRoute in the snapshot` });
    api.delete(GW, 'TCPRoute', 'postgres', 'shop');
    await eventually(() => routes() === '[]', { what: 'the TCPRoute gone' });
  });

  it('skips an object that fails the checks, with a log line naming it, and applies the rest; a policy on a skipped route is skipped too', async () => {
    const frontend = join('frontend', 'frontend-token');
    // Cross-resource: its parent is no Service of the mesh.
    api.apply({
      ...canary(1, 1, 'to-nowhere'),
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'nope' }], rules: [{ backendRefs: [{ name: 'backend' }] }] },
    });
    // Schema: a negative weight.
    api.apply(canary(-1, 10, 'negative'));
    // Junk: a spec that is not an object, a name no Kubernetes object could have.
    api.apply({ apiVersion: GW, kind: 'HTTPRoute', metadata: { name: 'junk\n"x', namespace: 'shop' }, spec: 'rules' });
    api.apply({
      apiVersion: TRELLIS,
      kind: 'RetryPolicy',
      metadata: { name: 'retry-nowhere', namespace: 'shop' },
      spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', name: 'to-nowhere' }] },
    });
    api.apply(canary(70, 30));
    await eventually(() => weights(frontend) === '[["backend-v1.shop",70],["backend-v2.shop",30]]', { what: `the valid route applied (${weights(frontend)})` });
    const skipped = plane.kubernetes!.skipped.map((s) => s.object);
    assert.deepEqual(skipped, [
      'kubernetes:HTTPRoute/shop/<invalid>',
      'kubernetes:HTTPRoute/shop/negative',
      'kubernetes:HTTPRoute/shop/to-nowhere',
      'kubernetes:RetryPolicy/shop/retry-nowhere',
    ]);
    assert.ok(
      logs.some((l) => /skipping kubernetes:HTTPRoute\/shop\/to-nowhere: spec\.parentRefs\[0\]\.name: names service "nope"/.test(l)),
      logs.join('\n'),
    );
    assert.ok(logs.some((l) => l.startsWith('control: kubernetes: skipping kubernetes:HTTPRoute/shop/negative: spec.rules[0].backendRefs[0].weight')));
    assert.ok(logs.some((l) => l.startsWith('control: kubernetes: skipping kubernetes:RetryPolicy/shop/retry-nowhere')));
    assert.ok(!logs.some((l) => l.includes('\n')), 'no log line carries a raw newline from an object');
    assert.equal(plane.model.config.routes.length, 1);
    const metrics = await plane.metrics.text();
    assert.match(metrics, /trellis_control_kubernetes_objects_skipped\{kind="HTTPRoute"\} 3/);
    assert.match(metrics, /trellis_control_kubernetes_objects_skipped\{kind="RetryPolicy"\} 1/);
    assert.match(metrics, /trellis_control_kubernetes_objects_skipped\{kind="AuthorizationPolicy"\} 0/);

    // Fixed in the API: the route applies, the policy on it with it.
    api.apply({
      ...canary(1, 1, 'to-nowhere'),
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'frontend' }], rules: [{ backendRefs: [{ name: 'frontend' }] }] },
    });
    await eventually(() => plane.kubernetes!.skipped.length === 2, { what: `two left skipped (${plane.kubernetes!.skipped.map((s) => s.object)})` });
    assert.equal(plane.model.config.policies?.length, 1);
    assert.ok(logs.some((l) => l === 'control: kubernetes: kubernetes:HTTPRoute/shop/to-nowhere is no longer skipped (fixed or deleted)'));
  });
});

describe('routes and policies from the kubernetes API with config files', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  let dir: string;
  const logs: string[] = [];
  const mesh = (services: readonly string[]): string =>
    [
      'apiVersion: trellis.dev/v1alpha1',
      'kind: Mesh',
      'metadata: { name: files }',
      'spec:',
      '  services:',
      ...services.flatMap((name, i) => [`    - name: ${name}`, '      namespace: shop', '      protocol: http', `      port: ${9000 + i}`]),
    ].join('\n');
  const fileRoute = [
    'apiVersion: gateway.networking.k8s.io/v1',
    'kind: HTTPRoute',
    'metadata: { name: legacy-route, namespace: shop }',
    'spec:',
    '  parentRefs: [{ kind: Service, group: "", name: legacy }]',
    '  rules: [{ backendRefs: [{ name: legacy }] }]',
  ].join('\n');
  const route = (name: string, parent: string): StandInObject => ({
    apiVersion: GW,
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop' },
    spec: { parentRefs: [{ kind: 'Service', group: '', name: parent }], rules: [{ backendRefs: [{ name: parent }] }] },
  });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-k8s-routes-'));
    await writeFile(path.join(dir, 'mesh.yaml'), mesh(['legacy']));
    await writeFile(path.join(dir, 'route.yaml'), fileRoute);
    api = await new KubeApiStandIn().start();
    api.apply(httpService('backend', 'shop', 'http'));
    // The same name as the file's route: the file's wins.
    api.apply(route('legacy-route', 'backend'));
    // Its parent is only in the files once they are edited.
    api.apply(route('to-cart', 'cart'));
    api.apply(route('to-backend', 'backend'));
    plane = await startKubernetesControlPlane(api, {
      log: (line) => void logs.push(line),
      configPaths: [path.join(dir, 'mesh.yaml'), path.join(dir, 'route.yaml')],
      plane: { watchPollMs: 0 },
    });
  });

  after(async () => {
    await stopKubernetesTest([], [plane], api);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const routes = (): string[] =>
    plane.model.config.routes.map((r) => `${r.file.startsWith('kubernetes:') ? r.file : path.basename(r.file)} ${r.resource.metadata.name}`);

  it('checks the API’s routes against the files’ services and the cluster’s; a name the files define stays the files’', () => {
    assert.deepEqual(routes(), ['route.yaml legacy-route', 'kubernetes:HTTPRoute/shop/to-backend to-backend']);
    assert.deepEqual(
      plane.kubernetes!.skipped.map((s) => [s.object, s.problems[0]!.message.split(';')[0]]),
      [
        ['kubernetes:HTTPRoute/shop/legacy-route', `HTTPRoute "shop/legacy-route" is defined twice (also ${path.join(dir, 'route.yaml')})`],
        ['kubernetes:HTTPRoute/shop/to-cart', 'names service "cart" in namespace shop, which is not in the mesh (services in namespace shop: legacy, backend)'],
      ],
    );
  });

  it('checks them again when the files change: a route whose parent the edited files add applies', async () => {
    await writeFile(path.join(dir, 'mesh.yaml'), mesh(['legacy', 'cart']));
    await plane.reload();
    await eventually(() => routes().includes('kubernetes:HTTPRoute/shop/to-cart to-cart'), { what: `the route to cart to apply (${routes()})` });
    assert.deepEqual(
      plane.kubernetes!.skipped.map((s) => s.object),
      ['kubernetes:HTTPRoute/shop/legacy-route'],
    );
  });
});

describe("the shop's topology-1 overlay in the kubernetes API", () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;

  before(async () => {
    api = await new KubeApiStandIn().start();
    // What `kubectl apply -k examples/shop/kubernetes/topology-1` creates: every object in namespace shop.
    for (const file of ['base/workloads.yaml', 'base/routes.yaml', 'topology-1/policies.yaml', 'topology-1/ingress.yaml']) {
      const text = await readFile(path.join('examples/shop/kubernetes', file), 'utf8');
      for (const doc of parseAllDocuments(text)) {
        const o = doc.toJS() as StandInObject | null;
        if (o?.kind === 'Namespace' || !o) continue;
        api.apply({ ...o, metadata: { ...o.metadata, namespace: 'shop' } });
      }
    }
    plane = await startKubernetesControlPlane(api);
  });

  after(() => stopKubernetesTest([], [plane], api));

  it('applies its canary route and AuthorizationPolicies; its Gateway serves the HTTP listeners, and refuses the HTTPS ones until their Secret exists', async () => {
    const config = plane.model.config;
    assert.deepEqual(
      config.routes.map((r) => r.file),
      ['kubernetes:HTTPRoute/shop/backend-canary', 'kubernetes:HTTPRoute/shop/shop-api-redirect', 'kubernetes:HTTPRoute/shop/shop-web-redirect'],
    );
    assert.deepEqual(
      config.authorizationPolicies?.map((p) => p.file),
      ['kubernetes:AuthorizationPolicy/shop/postgres-from-backend', 'kubernetes:AuthorizationPolicy/shop/redis-from-backend'],
    );
    assert.deepEqual(
      config.gateways?.map((g) => [`${g.namespace}/${g.name}`, g.listeners.map((l) => l.name)]),
      [['shop/trellis-ingress', ['web-http', 'api-http']]],
    );
    assert.deepEqual(
      plane.kubernetes!.refusedListeners.map((r) => [r.listener, r.reason]),
      [
        ['web', 'InvalidCertificateRef'],
        ['api', 'InvalidCertificateRef'],
      ],
    );
    // The routes of the refused listeners name a listener not served.
    const skipped = plane.kubernetes!.skipped;
    assert.deepEqual(
      skipped.map((s) => s.object),
      ['shop-api', 'shop-web'].map((n) => `kubernetes:HTTPRoute/shop/${n}`),
    );

    // The TLS Secret docs/kubernetes.md has one create: every listener and route is in force.
    const ca = await makeLocalCa('shop test CA');
    const site = await issueServerCertificate(ca, { dnsNames: ['localhost'] });
    api.apply(tlsSecret('localhost-tls', 'shop', site.cert, site.key));
    await eventually(() => plane.model.config.gateways?.[0]?.listeners.length === 4, { what: 'every listener of the Gateway served' });
    assert.equal(plane.model.config.routes.length, 5);
    assert.deepEqual(plane.kubernetes!.skipped, []);
    assert.deepEqual(plane.kubernetes!.refusedListeners, []);
    const web = plane.model.config.gateways![0]!.listeners.find((l) => l.name === 'web')!;
    assert.equal(web.certificates[0]!.chain, site.cert);
  });
});

describe('a kind whose CRD is not installed', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply(httpService('backend', 'shop', 'http'));
    const { list } = kubernetesControlOptions(api.kubeConfig());
    plane = await startKubernetesControlPlane(api, {
      log: (line) => void logs.push(line),
      kubernetes: {
        // The API server answers 404 for a resource no CRD defines.
        list: (p, o) =>
          p.endsWith('/ratelimitpolicies') ? Promise.reject(new Error(`404 from ${p}: the server could not find the requested resource`)) : list(p, o),
        syncTimeoutMs: 300,
      },
    });
  });

  after(() => stopKubernetesTest([], [plane], api));

  it('holds the start up to the sync timeout, names the kind, then serves what it has', () => {
    assert.ok(
      logs.some((l) => l.includes('not every kind listed within 300 ms (not yet: RateLimitPolicy; is its CRD installed?)')),
      logs.join('\n'),
    );
    assert.ok(plane.model.service('backend.shop'));
  });

  it('keeps what it serves current meanwhile: a Service and an AuthorizationPolicy created later are taken', async () => {
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply({
      apiVersion: TRELLIS,
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-all', namespace: 'shop' },
      spec: { targetRefs: [{ group: '', kind: 'Service', name: 'backend' }], action: 'ALLOW' },
    });
    await eventually(() => plane.model.service('frontend.shop') !== undefined, { what: 'the new Service in the model' });
    await eventually(() => plane.model.config.authorizationPolicies?.length === 1, { what: 'the new AuthorizationPolicy in force' });
  });
});
