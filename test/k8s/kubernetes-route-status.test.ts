// Gateway API route status written by the Lease leader (src/k8s/source/route-status.ts),
// against the API stand-in's status subresource through @kubernetes/client-node's
// KubeConfig: per parentRef an entry with controllerName trellis.dev/gateway-controller,
// Accepted (True; False NoMatchingParent) and ResolvedRefs (True; False BackendNotFound,
// RefNotPermitted until a ReferenceGrant lets the route in), observedGeneration; another
// controller's entry is kept; a status write does not move the generation, a spec change
// does and the status follows; what it wrote comes back as MODIFIED and is not written
// again (no write loop); a replica that does not lead writes nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { startLeaderAndFollower, stopKubernetesTest, type StatusCondition as Cond } from '../helpers/kubernetes-control-plane.js';
import { CONTROLLER_NAME } from '../../src/k8s/source/route-status.js';

const GW = 'gateway.networking.k8s.io/v1';

function slice(service: string, namespace: string, pods: readonly [string, string][]): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-abc`, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: pods.map(([pod, address]) => ({ addresses: [address], conditions: { ready: true }, targetRef: { kind: 'Pod', name: pod, namespace } })),
  };
}

function pod(name: string, namespace: string, version: string): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { version } },
    spec: { serviceAccountName: 'sa', containers: [{ name: 'app' }] },
  };
}

function route(
  name: string,
  parent: string,
  backends: readonly { name: string; namespace?: string; weight?: number }[],
  extra: Partial<StandInObject> = {},
): StandInObject {
  return {
    apiVersion: GW,
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop' },
    spec: { parentRefs: [{ kind: 'Service', group: '', name: parent }], rules: [{ backendRefs: backends }] },
    ...extra,
  };
}

interface ParentStatus {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: Cond[];
}

describe('Gateway API route status from the leader', () => {
  let api: KubeApiStandIn;
  let leader: ControlPlane;
  let follower: ControlPlane;
  const logs: string[] = [];

  const get = async (plural: string, name: string, ns = 'shop'): Promise<StandInObject & { status?: { parents?: ParentStatus[] } }> => {
    const res = await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/${plural}/${name}`);
    assert.equal(res.status, 200);
    return (await res.json()) as StandInObject;
  };
  const ours = async (name: string, plural = 'httproutes'): Promise<ParentStatus[]> =>
    ((await get(plural, name)).status?.parents ?? []).filter((p) => p.controllerName === CONTROLLER_NAME);
  const conds = (p: ParentStatus | undefined): string => JSON.stringify(p?.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration]) ?? null);

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply(httpService('ledger', 'billing', 'http'));
    api.apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'postgres', namespace: 'shop' },
      spec: { ports: [{ name: 'pg', port: 5432, protocol: 'TCP', appProtocol: 'tcp' }] },
    });
    api.apply(pod('backend-v1-0', 'shop', 'v1'));
    api.apply(pod('backend-v2-0', 'shop', 'v2'));
    api.apply(
      slice('backend', 'shop', [
        ['backend-v1-0', '10.0.0.1'],
        ['backend-v2-0', '10.0.0.2'],
      ]),
    );
    api.apply(
      route('canary', 'backend', [
        { name: 'backend-v1', weight: 90 },
        { name: 'backend-v2', weight: 10 },
      ]),
    );
    api.apply(route('orphan', 'nope', [{ name: 'backend' }]));
    api.apply(route('ghost', 'backend', [{ name: 'backend' }, { name: 'ghost' }]));
    api.apply(route('to-ledger', 'frontend', [{ name: 'ledger', namespace: 'billing' }]));
    api.apply(
      route('shared', 'frontend', [{ name: 'frontend' }], {
        status: {
          parents: [
            {
              parentRef: { name: 'frontend', kind: 'Service', group: '' },
              controllerName: 'example.com/other-mesh',
              conditions: [
                { type: 'Accepted', status: 'True', reason: 'Accepted', message: '', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' },
              ],
            },
          ],
        },
      }),
    );
    api.apply({
      apiVersion: GW,
      kind: 'TCPRoute',
      metadata: { name: 'pg', namespace: 'shop' },
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'postgres' }], rules: [{ backendRefs: [{ name: 'postgres', port: 5432 }] }] },
    });
    ({ leader, follower } = await startLeaderAndFollower(api, (line) => void logs.push(line)));
  });

  after(() => stopKubernetesTest([], [follower, leader], api));

  it('writes Accepted and ResolvedRefs per parentRef, with the observedGeneration', async () => {
    await eventually(async () => (await ours('canary')).length === 1, { what: 'the canary route to get a status' });
    const [canary] = await ours('canary');
    assert.deepEqual(canary!.parentRef, { kind: 'Service', group: '', name: 'backend' });
    assert.equal(
      conds(canary),
      JSON.stringify([
        ['Accepted', 'True', 'Accepted', 1],
        ['ResolvedRefs', 'True', 'ResolvedRefs', 1],
      ]),
    );
    await eventually(async () => (await ours('orphan')).length === 1, { what: 'the orphan route to get a status' });
    assert.equal(
      conds((await ours('orphan'))[0]),
      JSON.stringify([
        ['Accepted', 'False', 'NoMatchingParent', 1],
        ['ResolvedRefs', 'True', 'ResolvedRefs', 1],
      ]),
    );
    await eventually(async () => (await ours('ghost')).length === 1, { what: 'the ghost route to get a status' });
    const ghost = (await ours('ghost'))[0]!;
    assert.equal(
      conds(ghost),
      JSON.stringify([
        ['Accepted', 'True', 'Accepted', 1],
        ['ResolvedRefs', 'False', 'BackendNotFound', 1],
      ]),
    );
    assert.match(ghost.conditions[1]!.message, /spec\.rules\[0\]\.backendRefs\[1\]: no Service "ghost"/);
    await eventually(async () => (await ours('pg', 'tcproutes')).length === 1, { what: 'the TCPRoute (v1) to get a status' });
    assert.equal(
      conds((await ours('pg', 'tcproutes'))[0]),
      JSON.stringify([
        ['Accepted', 'True', 'Accepted', 1],
        ['ResolvedRefs', 'True', 'ResolvedRefs', 1],
      ]),
    );
  });

  it('a backend in another namespace is RefNotPermitted until a ReferenceGrant lets the route in', async () => {
    await eventually(async () => (await ours('to-ledger')).length === 1, { what: 'the to-ledger route to get a status' });
    const before = (await ours('to-ledger'))[0]!;
    assert.equal(before.conditions[1]!.reason, 'RefNotPermitted');
    api.apply({
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { name: 'shop-routes', namespace: 'billing' },
      spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }], to: [{ group: '', kind: 'Service' }] },
    });
    await eventually(async () => (await ours('to-ledger'))[0]?.conditions[1]?.reason === 'ResolvedRefs', { what: 'ResolvedRefs once granted' });
    const after = (await ours('to-ledger'))[0]!;
    assert.equal(after.conditions[1]!.status, 'True');
    assert.equal(after.conditions[0]!.lastTransitionTime, before.conditions[0]!.lastTransitionTime, 'Accepted kept its status, so its time');
  });

  it("keeps another controller's entry beside its own", async () => {
    await eventually(async () => (await ours('shared')).length === 1, { what: 'the shared route to get our status' });
    const parents = (await get('httproutes', 'shared')).status!.parents!;
    assert.deepEqual(
      parents.map((p) => p.controllerName),
      ['example.com/other-mesh', CONTROLLER_NAME],
    );
  });

  it('a status write keeps the generation; a spec change moves it and the status follows', async () => {
    const canary = await get('httproutes', 'canary');
    assert.equal(canary.metadata.generation, 1, 'the status writes did not move the generation');
    const previous = (await ours('canary'))[0]!;
    api.apply({
      ...route('canary', 'backend', [
        { name: 'backend-v1', weight: 50 },
        { name: 'backend-v2', weight: 50 },
      ]),
      status: canary.status,
    });
    await eventually(async () => (await ours('canary'))[0]?.conditions[0]?.observedGeneration === 2, { what: 'observedGeneration 2' });
    const now = (await ours('canary'))[0]!;
    assert.equal(now.conditions[0]!.lastTransitionTime, previous.conditions[0]!.lastTransitionTime);
    assert.equal((await get('httproutes', 'canary')).metadata.generation, 2);
  });

  it('writes only what changed (no write loop), and only from the leader', async () => {
    // Everything written so far came back as MODIFIED events and many resyncs (every 100 ms) ran
    // since; a marker route written now must be the only write from here on.
    await eventually(async () => (await ours('pg', 'tcproutes')).length === 1, { what: 'settled' });
    const settled = api.statusWrites.length;
    api.apply(route('marker', 'backend', [{ name: 'backend' }]));
    await eventually(async () => (await ours('marker')).length === 1, { what: 'the marker route to get a status' });
    // Five more looks at every route (resyncs every 100 ms, and a change), each finding nothing to write.
    const syncs = leader.kubernetes!.routeStatus!.counters.syncs;
    api.apply(httpService('extra', 'shop', 'http'));
    await eventually(() => leader.kubernetes!.routeStatus!.counters.syncs >= syncs + 5, { what: 'five more looks at the routes' });
    assert.deepEqual(
      api.statusWrites.slice(settled).map((w) => w.key),
      ['shop/marker'],
      `writes after settling: ${api.statusWrites
        .slice(settled)
        .map((w) => w.key)
        .join(', ')}`,
    );
    assert.equal(follower.kubernetes!.routeStatus!.counters.syncs, 0, 'the follower never looked');
    assert.ok(api.statusWrites.length > 0 && api.statusWrites.every((w) => w.token === 'leader-token'), 'the follower wrote nothing');
    assert.equal(follower.kubernetes?.leading, false);
  });
});
