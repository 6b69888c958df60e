// Fail closed on the security kinds (src/control/sources/kubernetes-unlisted.ts): the API
// stand-in answers 403 (RBAC) to every list of AuthorizationPolicies. After the start
// timeout the control plane serves the other kinds, but refuses every proxy at hello
// with TRELLIS_E_KUBERNETES_UNLISTED (the proxy retries), reports the kind in the gauge
// trellis_control_kubernetes_kind_unlisted and in /v1/kubernetes (`trellis check`), and
// logs it. Once the list succeeds the proxy joins, and its snapshot denies and allows
// per the policy. Before this, the proxy got a snapshot without the policy (every
// caller allowed). A later broken watch keeps the listed policy (no fail open either).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';
import { AuthzEngine } from '../../src/proxy/authz/engine.js';
import { checkKubernetesKinds } from '../../src/cli/mesh-checks.js';
import { checkMesh } from '../../src/cli/check.js';
import type { Snapshot } from '../../src/api/protocol.js';
import type { KubernetesView } from '../../src/api/admin.js';

const TRELLIS = 'trellis.dev/v1alpha1';

const policy: StandInObject = {
  apiVersion: TRELLIS,
  kind: 'AuthorizationPolicy',
  metadata: { name: 'backend-from-frontend', namespace: 'shop' },
  spec: {
    targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
    action: 'ALLOW',
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }],
  },
};

describe('a security kind the API will not list (fail closed)', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];
  const clients: ControlClient[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:backend', audiences: ['trellis'] });
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(httpService('frontend', 'shop', 'http'));
    api.apply(policy);
    api.refuse(TRELLIS, 'AuthorizationPolicy', 403);
    plane = await startKubernetesControlPlane(api, { log: (line) => void logs.push(line), kubernetes: { syncTimeoutMs: 300 } });
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  const admin = async (path: string): Promise<string> => {
    const res = await fetch(`${plane.url}${path}`, { headers: { authorization: `Bearer ${plane.adminToken}` } });
    assert.equal(res.status, 200, path);
    return res.text();
  };

  const join = (service: string, token: string): { applied: Snapshot[]; fatal: string[] } => joinControlPlane(plane, proxyInfo(service), token, clients);

  it('refuses proxies while AuthorizationPolicy has never listed, says why, then serves them with the policy', async () => {
    assert.ok(plane.model.service('backend.shop'), 'the other kinds are served');
    assert.ok(
      logs.some((l) => /refusing every proxy until it lists \(fail closed\): AuthorizationPolicy cannot be listed: 403 Forbidden, RBAC/.test(l)),
      logs.join('\n'),
    );
    const metrics = await admin('/metrics');
    assert.match(metrics, /trellis_control_kubernetes_kind_unlisted\{kind="AuthorizationPolicy"\} 1/);
    assert.match(metrics, /trellis_control_kubernetes_kind_unlisted\{kind="PeerAuthentication"\} 0/);
    const view = JSON.parse(await admin('/v1/kubernetes')) as KubernetesView;
    assert.deepEqual(
      view.unlisted.map((u) => [u.kind, u.cause, u.statusCode]),
      [['AuthorizationPolicy', 'rbac', 403]],
    );
    // `trellis check`'s mesh half, as the command runs it.
    const line = (await checkMesh({ url: plane.url, token: plane.adminToken }, Date.now, 0)).find((r) => /AuthorizationPolicy/.test(r.what));
    assert.equal(line?.level, 'fail');
    assert.match(line!.details.join('\n'), /403 Forbidden, RBAC/);
    const check = checkKubernetesKinds(view.unlisted);
    assert.equal(check.level, 'fail');
    assert.match(check.what, /cannot list AuthorizationPolicy/);
    assert.match(check.details[0]!, /RBAC: the control plane's ServiceAccount may not list and watch authorizationpolicies\.trellis\.dev/);

    const backend = join('backend', 'backend-token');
    // Refused, and refused again when it retries: never a snapshot without the policy.
    await eventually(() => backend.fatal.length >= 2, { what: `the backend proxy refused twice (${backend.fatal.join(' | ')})` });
    assert.equal(backend.applied.length, 0, 'no snapshot without the AuthorizationPolicy');
    assert.match(backend.fatal[0]!, /^TRELLIS_E_KUBERNETES_UNLISTED: .*AuthorizationPolicy cannot be listed: 403 Forbidden/);

    api.allow(TRELLIS, 'AuthorizationPolicy');
    await eventually(() => backend.applied.length > 0, { what: 'the backend proxy to join once the policies listed' });
    const engine = new AuthzEngine(backend.applied.at(-1)!.authorization);
    const peer = (serviceAccount: string) => ({ trustDomain: 'cluster.local', namespace: 'shop', serviceAccount });
    assert.equal(engine.checkTcp(peer('frontend'), 8080), undefined, 'the frontend is allowed');
    assert.equal(engine.checkTcp(peer('intruder'), 8080)?.result, 'denied', 'anyone else is denied');
    assert.equal(engine.checkTcp(undefined, 8080)?.result, 'denied', 'a caller without a certificate is denied');
    assert.ok(logs.some((l) => l.includes('every security policy kind listed; proxies are served again')));
    assert.match(await admin('/metrics'), /trellis_control_kubernetes_kind_unlisted\{kind="AuthorizationPolicy"\} 0/);
    assert.deepEqual((JSON.parse(await admin('/v1/kubernetes')) as KubernetesView).unlisted, []);
    assert.equal(checkKubernetesKinds([]).level, 'ok');
  });

  it('once listed, a watch that breaks and is then refused keeps the last good list', async () => {
    api.refuse(TRELLIS, 'AuthorizationPolicy', 403);
    api.breakWatches();
    await eventually(() => logs.some((l) => /k8s: AuthorizationPolicy: .*403/.test(l)), { what: 'the watch to be refused' });
    assert.deepEqual((JSON.parse(await admin('/v1/kubernetes')) as KubernetesView).unlisted, []);
    assert.equal(plane.model.config.authorizationPolicies?.length, 1, 'the policy stays in force');
    const again = join('backend', 'backend-token');
    await eventually(() => again.applied.length > 0, { what: 'a proxy joining meanwhile to be served' });
    assert.equal(again.applied.at(-1)!.authorization?.policies.length, 1);
    api.allow(TRELLIS, 'AuthorizationPolicy');
  });
});
