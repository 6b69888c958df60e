// Gateway API status of Gateways read from the API, written by the Lease leader
// (src/k8s/source/gateway-status.ts) through the API stand-in's status subresource: a
// Gateway of class trellis with a good HTTPS listener and one whose certificateRef names
// no Secret gets Accepted True (ListenersNotValid) and Programmed True, per listener
// supportedKinds, attachedRoutes (one HTTPRoute on each, counted whatever the listener's
// status, as the Gateway API's v1.6.1 CRD says) and Accepted, Programmed,
// ResolvedRefs (False InvalidCertificateRef on the bad one) and Conflicted False;
// creating the Secret flips the bad listener's ResolvedRefs to True. The HTTPRoute whose
// parentRef is that Gateway gets its status.parents entry judged against its listeners
// (Accepted; NoMatchingParent for a sectionName no listener has). A Gateway of another
// class gets nothing; a junk one is Accepted False Invalid; nothing is written twice (no
// write loop); the follower never writes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { startLeaderAndFollower, stopKubernetesTest, type StatusCondition as Cond } from '../helpers/kubernetes-control-plane.js';
import { CONTROLLER_NAME } from '../../src/k8s/source/route-status.js';
import { issueServerCertificate, makeLocalCa, type PemPair } from '../../src/security/local-tls.js';

const GW = 'gateway.networking.k8s.io/v1';

function tlsSecret(name: string, pair: PemPair): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: { name, namespace: 'shop' },
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64') },
  };
}

const https = (name: string, port: number, secret: string) => ({
  name,
  port,
  protocol: 'HTTPS',
  hostname: 'shop.example.test',
  tls: { mode: 'Terminate', certificateRefs: [{ group: '', kind: 'Secret', name: secret }] },
  allowedRoutes: { namespaces: { from: 'Same' } },
});

function gateway(name: string, listeners: unknown, className = 'trellis'): StandInObject {
  return { apiVersion: GW, kind: 'Gateway', metadata: { name, namespace: 'shop' }, spec: { gatewayClassName: className, listeners } };
}

function httpRoute(name: string, sectionName: string): StandInObject {
  return {
    apiVersion: GW,
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop' },
    spec: {
      parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', sectionName }],
      rules: [{ backendRefs: [{ name: 'frontend', port: 80 }] }],
    },
  };
}

interface ListenerStatus {
  name: string;
  supportedKinds: { group: string; kind: string }[];
  attachedRoutes: number;
  conditions: Cond[];
}
interface GatewayStatus {
  conditions?: Cond[];
  listeners?: ListenerStatus[];
}

const conds = (c: Cond[] | undefined): string[][] => (c ?? []).map((x) => [x.type, x.status, x.reason, String(x.observedGeneration)]);

describe('Gateway API status of the Gateways from the leader', () => {
  let api: KubeApiStandIn;
  let leader: ControlPlane;
  let follower: ControlPlane;
  let pair: PemPair;
  const logs: string[] = [];

  const get = async (plural: string, name: string): Promise<StandInObject & { status?: Record<string, unknown> }> => {
    const res = await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/namespaces/shop/${plural}/${name}`);
    assert.equal(res.status, 200);
    return (await res.json()) as StandInObject;
  };
  const status = async (name: string): Promise<GatewayStatus> => ((await get('gateways', name)).status ?? {}) as GatewayStatus;
  const listener = async (name: string): Promise<ListenerStatus | undefined> => (await status('edge')).listeners?.find((l) => l.name === name);

  before(async () => {
    const ca = await makeLocalCa('gateway status test CA');
    pair = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    api = await new KubeApiStandIn().start();
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply(tlsSecret('site', pair));
    api.apply(gateway('edge', [https('good', 8443, 'site'), https('bad', 9443, 'later')]));
    api.apply(gateway('other', [https('https', 7443, 'site')], 'istio'));
    // Passes no schema (a listener without a port): skipped, and says so in its status.
    api.apply(gateway('junk', [{ name: 'x', protocol: 'HTTP' }]));
    api.apply(httpRoute('site', 'good'));
    api.apply(httpRoute('nowhere', 'absent'));
    // On the refused listener: not Accepted (it does not serve), but attached all the same.
    api.apply(httpRoute('on-bad', 'bad'));
    ({ leader, follower } = await startLeaderAndFollower(api, (line) => void logs.push(line)));
  });

  after(() => stopKubernetesTest([], [follower, leader], api));

  it('writes the Gateway conditions and per listener its kinds, attached routes and conditions', async () => {
    await eventually(async () => (await status('edge')).listeners?.length === 2, { what: 'the edge Gateway to get a status' });
    const s = await status('edge');
    assert.deepEqual(conds(s.conditions), [
      ['Accepted', 'True', 'ListenersNotValid', '1'],
      ['Programmed', 'True', 'Programmed', '1'],
    ]);
    const good = (await listener('good'))!;
    assert.deepEqual(good.supportedKinds, [
      { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' },
      { group: 'gateway.networking.k8s.io', kind: 'GRPCRoute' },
    ]);
    assert.equal(good.attachedRoutes, 1, 'the site route (the nowhere route names no listener of edge)');
    assert.deepEqual(conds(good.conditions), [
      ['Accepted', 'True', 'Accepted', '1'],
      ['Programmed', 'True', 'Programmed', '1'],
      ['ResolvedRefs', 'True', 'ResolvedRefs', '1'],
      ['Conflicted', 'False', 'NoConflicts', '1'],
    ]);
    const bad = (await listener('bad'))!;
    assert.equal(bad.attachedRoutes, 1, 'the on-bad route: attachment does not depend on the listener’s or the route’s status');
    assert.deepEqual(conds(bad.conditions), [
      ['Accepted', 'True', 'Accepted', '1'],
      ['Programmed', 'False', 'Invalid', '1'],
      ['ResolvedRefs', 'False', 'InvalidCertificateRef', '1'],
      ['Conflicted', 'False', 'NoConflicts', '1'],
    ]);
    assert.match(bad.conditions[2]!.message, /Secret "shop\/later" does not exist/);
  });

  it('a junk Gateway of class trellis is Accepted False Invalid; another class gets no status', async () => {
    await eventually(async () => (await status('junk')).conditions?.length === 2, { what: 'the junk Gateway to get a status' });
    assert.deepEqual(conds((await status('junk')).conditions), [
      ['Accepted', 'False', 'Invalid', '1'],
      ['Programmed', 'False', 'Invalid', '1'],
    ]);
    assert.deepEqual((await get('gateways', 'other')).status ?? {}, {});
  });

  it('a route whose parentRef is the API Gateway gets its entry, judged against its listeners', async () => {
    const ours = async (name: string) =>
      (((await get('httproutes', name)).status?.parents ?? []) as { controllerName: string; conditions: Cond[] }[]).filter(
        (p) => p.controllerName === CONTROLLER_NAME,
      );
    await eventually(async () => (await ours('site')).length === 1, { what: 'the site route to get a status' });
    assert.deepEqual(conds((await ours('site'))[0]!.conditions).slice(0, 1), [['Accepted', 'True', 'Accepted', '1']]);
    await eventually(async () => (await ours('nowhere')).length === 1, { what: 'the nowhere route to get a status' });
    assert.deepEqual(conds((await ours('nowhere'))[0]!.conditions).slice(0, 1), [['Accepted', 'False', 'NoMatchingParent', '1']]);
    // On the refused listener: not Accepted, and the message says why the listener does not serve.
    await eventually(async () => (await ours('on-bad')).length === 1, { what: 'the on-bad route to get a status' });
    const onBad = (await ours('on-bad'))[0]!.conditions[0]!;
    assert.deepEqual([onBad.status, onBad.reason], ['False', 'NoMatchingParent']);
    assert.match(
      onBad.message,
      /^listener "bad" of Gateway shop\/edge does not serve: ResolvedRefs False InvalidCertificateRef: certificateRef Secret "shop\/later"/,
    );
  });

  it('creating the missing Secret flips the listener to ResolvedRefs True and the Gateway to Accepted', async () => {
    const before = (await listener('bad'))!;
    api.apply(tlsSecret('later', pair));
    await eventually(async () => (await listener('bad'))?.conditions[2]?.status === 'True', { what: 'the bad listener to resolve' });
    const after = (await listener('bad'))!;
    assert.deepEqual(conds(after.conditions).slice(1, 3), [
      ['Programmed', 'True', 'Programmed', '1'],
      ['ResolvedRefs', 'True', 'ResolvedRefs', '1'],
    ]);
    assert.equal(after.conditions[0]!.lastTransitionTime, before.conditions[0]!.lastTransitionTime, 'Accepted kept its status, so its time');
    await eventually(async () => (await status('edge')).conditions?.[0]?.reason === 'Accepted', { what: 'the Gateway to be Accepted' });
    const onBad = async () =>
      (((await get('httproutes', 'on-bad')).status?.parents ?? []) as { controllerName: string; conditions: Cond[] }[]).find(
        (p) => p.controllerName === CONTROLLER_NAME,
      );
    await eventually(async () => (await onBad())?.conditions[0]?.status === 'True', { what: 'the on-bad route to be Accepted once its listener serves' });
  });

  it('writes only what changed (no write loop), and only from the leader', async () => {
    await eventually(async () => (await status('edge')).conditions?.[0]?.reason === 'Accepted', { what: 'settled' });
    const settled = api.statusWrites.length;
    const syncs = leader.kubernetes!.gatewayStatus!.counters.syncs;
    api.apply(httpService('extra', 'shop', 'http'));
    await eventually(() => leader.kubernetes!.gatewayStatus!.counters.syncs >= syncs + 5, { what: 'five more looks at the Gateways' });
    assert.deepEqual(
      api.statusWrites.slice(settled).map((w) => w.key),
      [],
    );
    // A second route on the good listener: one write, attachedRoutes 2.
    api.apply(httpRoute('site-2', 'good'));
    await eventually(async () => (await listener('good'))?.attachedRoutes === 2, { what: 'two routes attached' });
    assert.equal(follower.kubernetes!.gatewayStatus!.counters.syncs, 0, 'the follower never looked');
    assert.ok(api.statusWrites.length > 0 && api.statusWrites.every((w) => w.token === 'leader-token'), 'the follower wrote nothing');
  });
});
