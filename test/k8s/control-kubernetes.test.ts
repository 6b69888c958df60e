// The control plane with `kubernetes` set, against the API stand-in through
// @kubernetes/client-node: Services and EndpointSlices become the model's services and
// endpoints (readiness is health, the sidecar's listener in front of the targetPort its
// inbound, its ServiceAccount
// the identity callers expect); proxies join with a ServiceAccount token checked by
// TokenReview, are known by the Service in the token's namespace, and their certificates
// name the token's ServiceAccount; the replica takes the Lease, and two replicas sign
// with one CA shared through the Secret trellis-ca.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { kubeCall } from '../../src/k8s/source/reflector.js';
import { routableInstances } from '../../src/control/distribute/distributor.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import type { IssuedCertificate, ProxyInfo } from '../../src/api/protocol.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest, type JoinedProxy } from '../helpers/kubernetes-control-plane.js';
import { generateKeyPair, makeCsr } from '../../src/security/x509.js';

const BACKEND_ID = 'spiffe://cluster.local/ns/shop/sa/shop-backend';

function backendSlice(ready: boolean): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'backend-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'backend' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ addresses: ['10.0.0.7'], conditions: { ready }, targetRef: { kind: 'Pod', name: 'backend-0', namespace: 'shop' } }],
  };
}

describe('control plane on kubernetes', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const clients: ControlClient[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:shop-backend', audiences: ['trellis'] });
    api.tokens.set('api-audience', { username: 'system:serviceaccount:shop:shop-backend', audiences: ['https://kubernetes.default.svc'] });
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(httpService('web', 'default'));
    api.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'backend-0', namespace: 'shop', labels: { app: 'backend', version: 'v1' } },
      spec: {
        serviceAccountName: 'shop-backend',
        initContainers: [
          {
            name: 'trellis-proxy',
            restartPolicy: 'Always',
            ports: [
              { name: 'trellis-in-0', containerPort: 15105 },
              { name: 'trellis-in-1', containerPort: 15106 },
            ],
          },
        ],
        containers: [{ name: 'app', ports: [{ containerPort: 9000 }, { containerPort: 8080 }] }],
      },
    });
    api.apply(backendSlice(true));
    plane = await startKubernetesControlPlane(api, { kubernetes: { replica: 'control-a' } });
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  const join = (info: ProxyInfo, credential: string): JoinedProxy => joinControlPlane(plane, info, credential, clients);
  const backendInfo = proxyInfo('backend');

  it('takes services and endpoints from the API: key, protocol, identity, the sidecar inbound port, readiness', async () => {
    const backend = plane.model.service('backend.shop');
    assert.ok(backend, 'backend.shop is a mesh service');
    assert.equal(backend.protocol, 'http');
    assert.deepEqual(backend.identities, [BACKEND_ID]);
    assert.deepEqual(
      backend.upstreams.map((u) => u.service),
      ['web'],
    );
    assert.equal(plane.model.service('web')?.protocol, 'detect');
    assert.deepEqual(routableInstances(plane.model), [
      {
        id: 'backend.shop@10.0.0.7',
        service: 'backend.shop',
        version: 'v1',
        inbound: { host: '10.0.0.7', port: 15106 },
        app: { host: '10.0.0.7', port: 8080 },
        status: 'healthy',
      },
    ]);
    const config = plane.model.config;
    api.apply(backendSlice(false));
    await eventually(() => routableInstances(plane.model)[0]?.status === 'unhealthy', { what: 'the not-ready endpoint to be unhealthy' });
    assert.equal(plane.model.config, config, 'an endpoint change keeps the config the same object');
    api.apply(backendSlice(true));
    await eventually(() => routableInstances(plane.model)[0]?.status === 'healthy', { what: 'the endpoint to be healthy again' });
  });

  it('elects itself leader through the Lease', async () => {
    await eventually(() => plane.kubernetes?.leading === true, { what: 'the replica to lead' });
    assert.ok(api.requests.some((r) => r.startsWith('POST /apis/coordination.k8s.io/v1/namespaces/trellis-system/leases')));
  });

  it('as the leader, issues the injection webhook its TLS Secret from the mesh CA', async () => {
    const call = kubeCall(api.kubeConfig());
    const secret = (await eventually(() => call('GET', '/api/v1/namespaces/trellis-system/secrets/trellis-webhook-tls'), {
      what: 'the webhook TLS Secret',
    })) as { type: string; data: Record<string, string> };
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.ok(secret.data['tls.crt'] && secret.data['tls.key'] && secret.data['ca.crt']);
  });

  it('joins a proxy by its ServiceAccount token; its certificate names the ServiceAccount; the sidecar registers no instance of its own', async () => {
    const { applied, client } = join(backendInfo, 'backend-token');
    await eventually(() => applied.length > 0, { what: 'the backend proxy to get its snapshot' });
    assert.equal(applied[0]!.service, 'backend.shop');
    assert.ok(applied[0]!.upstreams.web, 'every Service is an upstream');
    const issued: IssuedCertificate = await client.requestCertificate(await makeCsr(await generateKeyPair()));
    assert.equal(issued.spiffeId, BACKEND_ID);
    assert.equal(plane.model.instances().length, 0);
    assert.equal(routableInstances(plane.model).length, 1);
  });

  it('reviews a token once for many hellos (a reconnect storm), not once per hello', async () => {
    const reviews = (): number => api.requests.filter((r) => r.startsWith('POST /apis/authentication.k8s.io/v1/tokenreviews')).length;
    api.tokens.set('storm-token', { username: 'system:serviceaccount:shop:shop-backend', audiences: ['trellis'] });
    const before = reviews();
    const joined = Array.from({ length: 8 }, (_, i) => join({ ...backendInfo, id: `storm-${i}` }, 'storm-token'));
    await eventually(() => joined.every((j) => j.applied.length > 0), { what: 'eight proxies with one token to join' });
    assert.equal(reviews() - before, 1);
    for (const j of joined) j.client.stop();
  });

  it('refuses a hello without a token, with a token for another audience, or naming a service in another namespace', async () => {
    const missing = join({ ...backendInfo, id: 'p1' }, undefined as unknown as string);
    const audience = join({ ...backendInfo, id: 'p2' }, 'api-audience');
    const otherNs = join({ ...backendInfo, id: 'p3', service: 'backend.billing' }, 'backend-token');
    await eventually(() => missing.fatal.length > 0 && audience.fatal.length > 0 && otherNs.fatal.length > 0, { what: 'three refusals' });
    assert.match(missing.fatal[0]!, /TRELLIS_E_TOKEN_REFUSED.*no ServiceAccount token/);
    assert.match(audience.fatal[0]!, /TRELLIS_E_TOKEN_REFUSED.*did not authenticate/);
    assert.match(otherNs.fatal[0]!, /TRELLIS_E_TOKEN_REFUSED.*not in namespace shop/);
    for (const p of [missing, audience, otherNs]) assert.equal(p.applied.length, 0);
  });

  it('an endpoint whose slice goes away leaves the snapshots', async () => {
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'backend-abc', 'shop');
    await eventually(() => routableInstances(plane.model).length === 0, { what: 'the endpoint to go' });
  });
});

describe('two control plane replicas on kubernetes', () => {
  let api: KubeApiStandIn;
  let dir: string;
  const planes: ControlPlane[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-k8s-replicas-'));
  });

  after(async () => {
    for (const p of planes) await p.close();
    await api?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const replica = (name: string): Promise<ControlPlane> =>
    startKubernetesControlPlane(api, { kubernetes: { replica: name }, plane: { stateDir: path.join(dir, name) } });

  it('sign with one CA: the leader stores its generated CA in the Secret trellis-ca, the other replica adopts it; one of them leads', async () => {
    planes.push(await replica('control-a'));
    assert.ok(
      api.requests.some((r) => r.startsWith('POST /api/v1/namespaces/trellis-system/secrets')),
      'the leader created the CA Secret',
    );
    planes.push(await replica('control-b'));
    const [a, b] = planes as [ControlPlane, ControlPlane];
    assert.deepEqual(b.identity.ca.trustBundle(), a.identity.ca.trustBundle());
    assert.equal(a.kubernetes?.leading, true);
    assert.equal(b.kubernetes?.leading, false);
    // A restarted replica keeps the shared CA (its own folder already holds it).
    await b.close();
    planes.pop();
    planes.push(await replica('control-b'));
    assert.deepEqual(planes[1]!.identity.ca.trustBundle(), a.identity.ca.trustBundle());
  });
});
