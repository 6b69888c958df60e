// Gateways and their TLS Secrets from the Kubernetes API (`trellis control --kubernetes`),
// against the API stand-in through @kubernetes/client-node: a Gateway of class trellis,
// its Secret and an HTTPRoute give the gateway proxy's snapshot its HTTPS port, the
// certificate and the route (a Gateway of another class is ignored); Secrets are listed
// with a type=kubernetes.io/tls field selector; a Secret rotated to a bad certificate keeps
// the last good one (log + metric), a good one replaces it; a certificateRef into another
// namespace is refused (ResolvedRefs False, RefNotPermitted) until a ReferenceGrant lets it;
// a junk Gateway is skipped with a log line and the skipped-objects metric; an API Secret's
// file annotations are never read; the admin API's /v1/snapshots and /v1/config show no
// private key; and only the ServiceAccount named as the Gateway may join as its proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { KubeApiStandIn, collectionOf, httpService, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';
import { issueServerCertificate, makeLocalCa, type PemPair } from '../../src/security/local-tls.js';
import { REDACTED_KEY } from '../../src/api/redact.js';
import { GATEWAY_KINDS_READ, GatewaySource } from '../../src/control/sources/kubernetes-gateways.js';
import type { KubeObject } from '../../src/k8s/source/reflector.js';

const GW = 'gateway.networking.k8s.io/v1';

function tlsSecret(name: string, namespace: string, pair: { cert: string; key: string }, extra: Partial<StandInObject> = {}): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: { name, namespace },
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64'), 'ca.crt': '' },
    ...extra,
  };
}

function gateway(name: string, listeners: Record<string, unknown>[], className = 'trellis'): StandInObject {
  return {
    apiVersion: GW,
    kind: 'Gateway',
    metadata: { name, namespace: 'shop', uid: 'g-1', generation: 1 },
    spec: { gatewayClassName: className, listeners },
    status: { conditions: [] },
  };
}

const https = (name: string, port: number, ref: { name: string; namespace?: string }) => ({
  name,
  port,
  protocol: 'HTTPS',
  hostname: 'shop.example.test',
  tls: { mode: 'Terminate', certificateRefs: [{ group: '', kind: 'Secret', ...ref }] },
  allowedRoutes: { namespaces: { from: 'Same' } },
});

const serial = (pem: string): string => new X509Certificate(pem).serialNumber;

describe('Gateways and TLS Secrets from the kubernetes API', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  let ca: PemPair;
  let first: PemPair;
  let second: PemPair;
  const logs: string[] = [];
  const clients: ControlClient[] = [];
  let applied: Snapshot[] = [];

  before(async () => {
    ca = await makeLocalCa('gateway test CA');
    first = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    second = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    api = await new KubeApiStandIn().start();
    api.tokens.set('edge-token', { username: 'system:serviceaccount:shop:edge', audiences: ['trellis'] });
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply(tlsSecret('site', 'shop', first));
    // An Opaque Secret of the same shape: never listed (the field selector), never served.
    api.apply({ ...tlsSecret('opaque', 'shop', second), type: 'Opaque' });
    api.apply(gateway('edge', [https('https', 8443, { name: 'site' })]));
    api.apply(gateway('other', [https('https', 9443, { name: 'site' })], 'istio'));
    api.apply({
      apiVersion: GW,
      kind: 'HTTPRoute',
      metadata: { name: 'site', namespace: 'shop' },
      spec: {
        parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', sectionName: 'https' }],
        rules: [{ backendRefs: [{ name: 'frontend', port: 80 }] }],
      },
    });
    plane = await startKubernetesControlPlane(api, { log: (line) => void logs.push(line) });
    applied = joinControlPlane(plane, proxyInfo('edge', { kind: 'gateway' }), 'edge-token', clients).applied;
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  const port = (n: number) => applied.at(-1)?.gateway?.ports.find((p) => p.port === n);
  const admin = async (path: string): Promise<string> => {
    const res = await fetch(`${plane.url}${path}`, { headers: { authorization: `Bearer ${plane.adminToken}` } });
    assert.equal(res.status, 200, path);
    return res.text();
  };

  it('lists Gateways at their plural and Secrets with the type=kubernetes.io/tls field selector', async () => {
    assert.equal(collectionOf(GW, 'Gateway'), '/apis/gateway.networking.k8s.io/v1/gateways');
    assert.ok(api.requests.some((r) => r.startsWith('GET /apis/gateway.networking.k8s.io/v1/gateways?')));
    const secrets = (): string[] => api.requests.filter((r) => r.startsWith('GET /api/v1/secrets'));
    await eventually(() => secrets().some((r) => r.includes('watch=true')), { what: 'a watch of Secrets' });
    for (const r of secrets()) assert.equal(new URL(r.slice(4), 'http://x').searchParams.get('fieldSelector'), 'type=kubernetes.io/tls', r);
  });

  it('gives the gateway proxy the HTTPS port of its Gateway, the Secret’s certificate and the route; another class’s Gateway is ignored', async () => {
    await eventually(() => port(8443) !== undefined, { what: 'the Gateway’s port in the gateway proxy’s snapshot' });
    const p = port(8443)!;
    assert.equal(p.protocol, 'HTTPS');
    assert.equal(p.certificates?.length, 1);
    assert.equal(p.certificates![0]!.name, 'shop/site');
    assert.equal(p.certificates![0]!.chain, first.cert);
    assert.equal(p.certificates![0]!.key, first.key);
    assert.ok(applied.at(-1)!.upstreams[p.upstream]?.routes.some((r) => r.backends.some((b) => b.backend.startsWith('frontend'))));
    assert.equal(port(9443), undefined);
    assert.deepEqual(
      plane.model.config.gateways?.map((g) => g.name),
      ['edge'],
    );
  });

  it('shows no private key in /v1/snapshots or /v1/config', async () => {
    const snapshot = await admin('/v1/snapshots/edge-0');
    assert.ok(snapshot.includes(JSON.stringify(first.cert).slice(1, 60)), 'the certificate is shown');
    assert.ok(snapshot.includes(REDACTED_KEY));
    for (const text of [snapshot, await admin('/v1/config')]) {
      assert.doesNotMatch(text, /PRIVATE KEY/);
      assert.ok(!text.includes(first.key.split('\n')[1]!), 'no line of the key');
    }
    assert.ok(!logs.join('\n').includes('PRIVATE KEY'));
  });

  it('refuses a gateway proxy whose ServiceAccount is not named as its Gateway (the keys are the Gateway’s, not the namespace’s)', async () => {
    api.tokens.set('frontend-token', { username: 'system:serviceaccount:shop:frontend', audiences: ['trellis'] });
    const evil = joinControlPlane(plane, proxyInfo('edge', { id: 'edge-evil', kind: 'gateway' }), 'frontend-token', clients);
    await eventually(() => evil.fatal.length > 0, { what: 'the hello refused' });
    evil.client.stop();
    assert.match(evil.fatal[0]!, /must run as ServiceAccount edge of namespace shop/);
    assert.deepEqual(evil.applied, []);
  });

  it('keeps the last good certificate when the Secret is rotated to a bad one (log and metric); a good one replaces it', async () => {
    const mismatched = { cert: second.cert, key: first.key };
    api.apply(tlsSecret('site', 'shop', mismatched));
    await eventually(() => plane.kubernetes!.skipped.some((s) => s.object === 'kubernetes:Secret/shop/site'), { what: 'the bad Secret skipped' });
    assert.ok(
      logs.some((l) => l.includes('skipping kubernetes:Secret/shop/site: data: the key is not the private key of the certificate') && l.includes('last good')),
      logs.join('\n'),
    );
    assert.match(await plane.metrics.text(), /trellis_control_kubernetes_objects_skipped\{kind="Secret"\} 1/);
    assert.equal(serial(port(8443)!.certificates![0]!.chain), serial(first.cert));
    assert.ok(plane.model.config.gateways?.[0]?.listeners.some((l) => l.name === 'https'));

    api.apply(tlsSecret('site', 'shop', second));
    await eventually(() => serial(port(8443)?.certificates?.[0]?.chain ?? first.cert) === serial(second.cert), { what: 'the new certificate served' });
    assert.equal(port(8443)!.certificates![0]!.key, second.key);
    assert.deepEqual(plane.kubernetes!.skipped, []);
    assert.match(await plane.metrics.text(), /trellis_control_kubernetes_objects_skipped\{kind="Secret"\} 0/);
  });

  it('refuses a listener whose Secret is in another namespace (RefNotPermitted) until a ReferenceGrant there lets it', async () => {
    api.apply(tlsSecret('shared', 'certs', first));
    api.apply(gateway('edge', [https('https', 8443, { name: 'site' }), https('shared', 8444, { name: 'shared', namespace: 'certs' })]));
    await eventually(() => plane.kubernetes!.refusedListeners.length === 1, { what: 'the cross-namespace listener refused' });
    const [r] = plane.kubernetes!.refusedListeners;
    assert.deepEqual([r!.gateway, r!.listener, r!.type, r!.status, r!.reason], ['shop/edge', 'shared', 'ResolvedRefs', 'False', 'RefNotPermitted']);
    assert.ok(logs.some((l) => l.includes('Gateway shop/edge listener shared refused (ResolvedRefs False, RefNotPermitted)')));
    // Its other listener serves.
    assert.ok(port(8443));
    assert.equal(port(8444), undefined);

    api.apply({
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { name: 'gateways-from-shop', namespace: 'certs' },
      spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop' }], to: [{ group: '', kind: 'Secret', name: 'shared' }] },
    });
    await eventually(() => port(8444) !== undefined, { what: 'the granted listener served' });
    assert.equal(port(8444)!.certificates![0]!.name, 'certs/shared');
    assert.deepEqual(plane.kubernetes!.refusedListeners, []);
    // A Secret grant is the Gateways', not a mesh grant refused for opening no Service.
    assert.deepEqual(plane.kubernetes!.skipped, []);
  });

  it('skips a junk Gateway with a log line and the metric, and never reads a file an API Secret’s annotations name', async () => {
    api.apply({ ...gateway('junk', [{ name: 'x', port: 'eighty', protocol: 'HTTP' }]), spec: { gatewayClassName: 'trellis', listeners: 'none' } });
    api.apply(
      tlsSecret('sneaky', 'shop', first, {
        data: undefined,
        metadata: {
          name: 'sneaky',
          namespace: 'shop',
          annotations: { 'trellis.dev/certificate-file': '/etc/hostname', 'trellis.dev/key-file': '/etc/hostname' },
        },
      }),
    );
    api.apply(gateway('sneaky', [https('https', 7443, { name: 'sneaky' })]));
    await eventually(() => plane.kubernetes!.skipped.some((s) => s.object === 'kubernetes:Gateway/shop/junk'), { what: 'the junk Gateway skipped' });
    await eventually(() => plane.kubernetes!.refusedListeners.some((r) => r.gateway === 'shop/sneaky'), { what: 'the sneaky listener refused' });
    assert.ok(logs.some((l) => l.startsWith('control: kubernetes: skipping kubernetes:Gateway/shop/junk: spec.listeners')));
    assert.match(await plane.metrics.text(), /trellis_control_kubernetes_objects_skipped\{kind="Gateway"\} 1/);
    assert.equal(plane.kubernetes!.refusedListeners.find((r) => r.gateway === 'shop/sneaky')!.reason, 'InvalidCertificateRef');
    assert.ok(plane.kubernetes!.skipped.some((s) => s.object === 'kubernetes:Secret/shop/sneaky' && /tls\.crt and tls\.key/.test(s.problems[0]!.message)));
    // The good Gateway is untouched.
    assert.ok(port(8443));
  });
});

describe('a Gateway created after its proxy joined, then deleted', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const clients: ControlClient[] = [];
  let applied: Snapshot[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('late-token', { username: 'system:serviceaccount:shop:late', audiences: ['trellis'] });
    api.apply(httpService('frontend', 'shop', 'http'));
    plane = await startKubernetesControlPlane(api);
    applied = joinControlPlane(plane, proxyInfo('late', { kind: 'gateway' }), 'late-token', clients).applied;
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  it('gives the waiting proxy its ports once the Gateway exists, and takes them away when it is deleted', async () => {
    await eventually(() => applied.length > 0, { what: 'a first snapshot, with no Gateway yet' });
    assert.equal(applied.at(-1)!.gateway, undefined);
    api.apply({
      apiVersion: GW,
      kind: 'Gateway',
      metadata: { name: 'late', namespace: 'shop' },
      spec: { gatewayClassName: 'trellis', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] },
    });
    await eventually(() => applied.at(-1)?.gateway?.ports[0]?.port === 8080, { what: 'the Gateway’s port in the snapshot' });
    api.delete(GW, 'Gateway', 'late', 'shop');
    await eventually(() => applied.at(-1)?.gateway === undefined, { what: 'the Gateway gone from the snapshot' });
  });
});

describe('GatewaySource', () => {
  it('checks again only when a Gateway, a Secret, a grant or the files’ Gateways changed (a certificate costs about 1 ms to check)', async () => {
    const ca = await makeLocalCa('cache test CA');
    const pair = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    const items = new Map<string, KubeObject[]>([
      [
        '/apis/gateway.networking.k8s.io/v1/gateways',
        [{ ...gateway('edge', [https('https', 8443, { name: 'site' })]), metadata: { name: 'edge', namespace: 'shop', resourceVersion: '1' } }],
      ],
      [GATEWAY_KINDS_READ[1]!.path, [{ ...tlsSecret('site', 'shop', pair), metadata: { name: 'site', namespace: 'shop', resourceVersion: '2' } }]],
    ]);
    const source = new GatewaySource({
      list: async (p) => ({ metadata: { resourceVersion: '9' }, items: items.get(p) ?? [] }),
      watch: async () => ({ abort: () => {} }),
      log: () => {},
      onChange: () => {},
    });
    source.start();
    try {
      await eventually(() => source.synced, { what: 'both kinds listed' });
      const first = source.check([], undefined);
      assert.equal(first.gateways.length, 1);
      assert.equal(source.check([], undefined), first, 'the same result when nothing it reads changed');
      const grant = { metadata: { name: 'g', namespace: 'certs', resourceVersion: '3' }, spec: {} };
      const withGrant = source.check([grant], undefined);
      assert.notEqual(withGrant, first, 'a grant changed');
      assert.equal(source.check([grant], undefined), withGrant);
      assert.notEqual(source.check([grant], []), withGrant, 'the files’ Gateways changed');
    } finally {
      source.stop();
    }
  });
});
