// The Kubernetes source end to end through the API stand-in: whatever happens to its
// watches (cut, ended, 410 Gone, reordered events, compacted history), its view of
// services and endpoints ends up exactly the view built from the same state listed
// directly, and no endpoint is lost or reported twice on the way.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import { kubeTransport } from '../../src/k8s/source/reflector.js';
import { KubernetesSource, clusterView, podVersion, type ClusterView } from '../../src/control/sources/kubernetes-source.js';

const TD = 'cluster.local';

function service(name: string, appProtocol?: string): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'shop' },
    spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP', ...(appProtocol ? { appProtocol } : {}) }] },
  };
}
function pod(name: string, labels: Record<string, string>, sa = 'cart'): StandInObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels }, spec: { serviceAccountName: sa } };
}
function slice(name: string, svc: string, eps: { ip: string; pod?: string; ready?: boolean; serving?: boolean; terminating?: boolean }[]): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating ? { terminating: true } : {}) },
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace: 'shop' } } : {}),
    })),
  };
}

describe('kubernetes source', () => {
  let api: KubeApiStandIn;
  let source: KubernetesSource;
  const views: ClusterView[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply(service('cart', 'http'));
    api.apply(service('web', 'kubernetes.io/h2c'));
    api.apply(pod('cart-a', { app: 'cart', version: 'v1' }));
    api.apply(pod('cart-b', { app: 'cart', 'app.kubernetes.io/version': 'v2' }));
    api.apply(pod('web-a', { app: 'web' }, 'web'));
    api.apply(
      slice('cart-1', 'cart', [
        { ip: '10.0.0.1', pod: 'cart-a' },
        { ip: '10.0.0.2', pod: 'cart-b', ready: false, serving: true, terminating: true },
      ]),
    );
    api.apply(slice('web-1', 'web', [{ ip: '10.0.1.1', pod: 'web-a' }]));
    source = new KubernetesSource({
      ...kubeTransport(api.kubeConfig()),
      trustDomain: TD,
      pageSize: 2,
      backoffMs: { initial: 5, max: 50 },
      onView: (v) => views.push(v),
    });
    source.start();
  });
  after(async () => {
    source?.stop();
    await api?.close();
  });

  /** The view from the server's state listed directly, with no watch involved. */
  const direct = async (): Promise<ClusterView> => {
    const { list } = kubeTransport(api.kubeConfig());
    const all = async (path: string) => (await list(path, { limit: 10_000 })).items ?? [];
    return clusterView(
      { services: await all('/api/v1/services'), endpointSlices: await all('/apis/discovery.k8s.io/v1/endpointslices'), pods: await all('/api/v1/pods') },
      TD,
    );
  };
  const converged = async (): Promise<ClusterView> => {
    const want = await direct();
    await eventually(() => assert.deepEqual(source.view(), want));
    const last = views.at(-1);
    assert.deepEqual(last, want, 'the last view handed on is the converged one');
    for (const v of views) {
      const keys = v.endpoints.map((e) => `${e.service}|${e.address}`);
      assert.equal(new Set(keys).size, keys.length, 'no endpoint twice in a view');
    }
    return want;
  };
  const allWatching = (): Promise<unknown> => eventually(() => api.openWatches === source.reflectors.size);

  it('maps services, endpoint conditions, pod versions and service accounts', async () => {
    const view = await converged();
    assert.deepEqual(
      view.services.map((s) => [s.key, s.ports[0]?.appProtocol]),
      [
        ['cart.shop', 'http'],
        ['web.shop', 'kubernetes.io/h2c'],
      ],
    );
    assert.deepEqual(
      view.endpoints.map((e) => [e.service, e.address, e.health, e.version, e.identity]),
      [
        ['cart.shop', '10.0.0.1', 'healthy', 'v1', 'spiffe://cluster.local/ns/shop/sa/cart'],
        ['cart.shop', '10.0.0.2', 'draining', 'v2', 'spiffe://cluster.local/ns/shop/sa/cart'],
        ['web.shop', '10.0.1.1', 'healthy', 'default', 'spiffe://cluster.local/ns/shop/sa/web'],
      ],
    );
    assert.equal(podVersion(undefined), 'default');
  });

  it('keeps every endpoint through cut watches and changes made while they were down', async () => {
    await allWatching();
    api.breakWatches();
    api.apply(
      slice('cart-1', 'cart', [
        { ip: '10.0.0.1', pod: 'cart-a' },
        { ip: '10.0.0.3', pod: 'cart-b' },
      ]),
    );
    api.apply(pod('cart-a', { app: 'cart', version: 'v3' }));
    await converged();
  });

  it('re-lists after 410 (ERROR events and compacted history) and ends up exact', async () => {
    await allWatching();
    api.hold();
    api.apply(slice('web-1', 'web', [{ ip: '10.0.1.1', pod: 'web-a', ready: false, serving: false }]));
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'cart-1', 'shop');
    api.apply(slice('cart-2', 'cart', [{ ip: '10.0.0.9', pod: 'cart-a' }]));
    api.release();
    api.compact();
    api.expireWatches();
    const view = await converged();
    assert.deepEqual(
      view.endpoints.map((e) => [e.address, e.health]),
      [
        ['10.0.0.9', 'healthy'],
        ['10.0.1.1', 'unhealthy'],
      ],
    );
  });

  it('an address in two slices (a slice move) is one endpoint, the healthier', async () => {
    await allWatching();
    api.apply(slice('cart-3', 'cart', [{ ip: '10.0.0.9', pod: 'cart-a', ready: false, serving: false }]));
    const view = await converged();
    assert.deepEqual(
      view.endpoints.filter((e) => e.service === 'cart.shop').map((e) => [e.address, e.health]),
      [['10.0.0.9', 'healthy']],
    );
  });

  it('drops the endpoints of a deleted service', async () => {
    await allWatching();
    api.delete('v1', 'Service', 'web', 'shop');
    const view = await converged();
    assert.deepEqual(
      view.services.map((s) => s.key),
      ['cart.shop'],
    );
    assert.ok(view.endpoints.every((e) => e.service === 'cart.shop'));
  });
});
