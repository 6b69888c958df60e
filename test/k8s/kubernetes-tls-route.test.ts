// TLSRoutes from the Kubernetes API (`trellis control --kubernetes`), against the API
// stand-in: a TLSRoute created in the API on a Gateway's TLS (Passthrough) listener appears
// in the gateway proxy's snapshot as that port's route, by SNI, to its backend; the Lease
// leader writes its status.parents (Accepted, ResolvedRefs) and the listener's
// attachedRoutes counts it. A TLSRoute naming a Gateway that has no TLS listener is
// skipped, with a log line and the skipped-objects metric. Failed before: TLSRoutes were
// not read from the API (the port had no routes, the route no status).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn, httpService, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';
import { CONTROLLER_NAME } from '../../src/k8s/source/route-status.js';

const GW = 'gateway.networking.k8s.io/v1';

function tlsRoute(name: string, gateway: string): StandInObject {
  return {
    apiVersion: GW,
    kind: 'TLSRoute',
    metadata: { name, namespace: 'shop' },
    spec: {
      parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: gateway }],
      hostnames: ['db.example.test'],
      rules: [{ backendRefs: [{ name: 'db', port: 80 }] }],
    },
  };
}

interface Cond {
  type: string;
  status: string;
  reason: string;
}

describe('TLSRoutes from the kubernetes API', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];
  const clients: ControlClient[] = [];
  let applied: Snapshot[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('edge-token', { username: 'system:serviceaccount:shop:edge', audiences: ['trellis'] });
    api.apply(httpService('db', 'shop', 'tcp'));
    api.apply({
      apiVersion: GW,
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        gatewayClassName: 'trellis',
        listeners: [{ name: 'tls', port: 8443, protocol: 'TLS', tls: { mode: 'Passthrough' }, allowedRoutes: { namespaces: { from: 'Same' } } }],
      },
    });
    api.apply({
      apiVersion: GW,
      kind: 'Gateway',
      metadata: { name: 'plain', namespace: 'shop' },
      spec: { gatewayClassName: 'trellis', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] },
    });
    plane = await startKubernetesControlPlane(api, {
      log: (line) => void logs.push(line),
      token: 'leader-token',
      kubernetes: { replica: 'control-a', statusResyncMs: 100 },
    });
    applied = joinControlPlane(plane, proxyInfo('edge', { kind: 'gateway' }), 'edge-token', clients).applied;
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  const port = (n: number) => applied.at(-1)?.gateway?.ports.find((p) => p.port === n);
  const routes = (): Snapshot['upstreams'][string]['routes'] | undefined => {
    const p = port(8443);
    return p === undefined ? undefined : applied.at(-1)!.upstreams[p.upstream]?.routes;
  };
  const get = async (plural: string, name: string): Promise<StandInObject & { status?: Record<string, unknown> }> => {
    const res = await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/namespaces/shop/${plural}/${name}`);
    assert.equal(res.status, 200);
    return (await res.json()) as StandInObject;
  };

  it('gives the gateway proxy the TLSRoute created in the API on its Passthrough port, and writes its status and attachedRoutes', async () => {
    await eventually(() => port(8443) !== undefined, { what: 'the TLS port in the gateway proxy’s snapshot' });
    assert.equal(port(8443)!.protocol, 'TLS');
    assert.equal(routes()?.length ?? 0, 0);
    api.apply(tlsRoute('db', 'edge'));
    await eventually(() => (routes()?.length ?? 0) > 0, { what: 'the TLSRoute in the snapshot' });
    const r = routes()![0]!;
    assert.equal(r.hostname, 'db.example.test');
    assert.ok(
      r.backends.some((b) => b.backend.startsWith('db') && b.invalid === undefined),
      JSON.stringify(r.backends),
    );

    await eventually(
      async () => {
        const parents = ((await get('tlsroutes', 'db')).status?.parents ?? []) as { controllerName: string; conditions: Cond[] }[];
        const accepted = parents[0]?.conditions.find((c) => c.type === 'Accepted');
        return parents.length === 1 && parents[0]!.controllerName === CONTROLLER_NAME && accepted?.status === 'True';
      },
      { what: 'the TLSRoute Accepted in its status.parents' },
    );
    await eventually(
      async () => {
        const listeners = ((await get('gateways', 'edge')).status?.listeners ?? []) as { name: string; attachedRoutes: number }[];
        return listeners.find((l) => l.name === 'tls')?.attachedRoutes === 1;
      },
      { what: 'attachedRoutes 1 on the TLS listener' },
    );
  });

  it('skips a TLSRoute naming a Gateway without a TLS listener, with a log line and the metric', async () => {
    api.apply(tlsRoute('nowhere', 'plain'));
    await eventually(() => plane.kubernetes?.skipped.some((s) => s.object === 'kubernetes:TLSRoute/shop/nowhere') === true, {
      what: 'the TLSRoute skipped',
    });
    assert.ok(logs.some((l) => l.includes('skipping kubernetes:TLSRoute/shop/nowhere') && l.includes('no TLS listener')));
    const res = await fetch(`${plane.url}/metrics`, { headers: { authorization: `Bearer ${plane.adminToken}` } });
    assert.match(await res.text(), /trellis_control_kubernetes_objects_skipped\{kind="TLSRoute"\} 1/);
    // The good one stays in force.
    assert.equal(routes()?.length, 1);
  });
});
