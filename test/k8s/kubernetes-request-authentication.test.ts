// RequestAuthentications from the Kubernetes API (`trellis control --kubernetes`), a
// security kind that fails closed: while the stand-in answers 403 to their lists, a proxy
// is refused at hello with TRELLIS_E_KUBERNETES_UNLISTED naming RequestAuthentication
// (before, the kind was not read at all: the proxy got a snapshot that checked no token).
// Once it lists, the backend's snapshot holds the inline key set of the policy targeting
// it; a policy with a jwksFile is skipped (an API object never names a file the control
// plane reads) with its log line, and one with a jwksUri passes it on to the proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import type { ControlClient } from '../../src/proxy/control-client.js';
import { joinControlPlane, proxyInfo, startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';

const TRELLIS = 'trellis.dev/v1alpha1';

function authn(name: string, rule: Record<string, unknown>): StandInObject {
  return {
    apiVersion: TRELLIS,
    kind: 'RequestAuthentication',
    metadata: { name, namespace: 'shop' },
    spec: { targetRefs: [{ group: '', kind: 'Service', name: 'backend' }], jwtRules: [{ issuer: `https://${name}.example`, ...rule }] },
  };
}

describe('RequestAuthentications from the kubernetes API (fail closed)', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];
  const clients: ControlClient[] = [];
  const jwks = JSON.stringify({
    keys: [{ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }],
  });

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:backend', audiences: ['trellis'] });
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(authn('inline', { jwks }));
    api.apply(authn('remote', { jwksUri: 'https://remote.example/jwks.json' }));
    api.apply(authn('from-file', { jwksFile: '/etc/passwd' }));
    api.refuse(TRELLIS, 'RequestAuthentication', 403);
    plane = await startKubernetesControlPlane(api, { log: (line) => void logs.push(line), kubernetes: { syncTimeoutMs: 300 } });
  });

  after(() => stopKubernetesTest(clients, [plane], api));

  it('refuses proxies until RequestAuthentication lists, then serves the inline and jwksUri rules and skips a jwksFile', async () => {
    const { applied, fatal } = joinControlPlane(plane, proxyInfo('backend'), 'backend-token', clients);
    await eventually(() => fatal.length >= 1, { what: 'the backend proxy refused' });
    assert.equal(applied.length, 0, 'no snapshot without the RequestAuthentications');
    assert.match(fatal[0]!, /^TRELLIS_E_KUBERNETES_UNLISTED: .*RequestAuthentication cannot be listed: 403 Forbidden/);
    assert.deepEqual(
      plane.kubernetes!.unlisted.map((u) => u.kind),
      ['RequestAuthentication'],
    );

    api.allow(TRELLIS, 'RequestAuthentication');
    await eventually(() => (applied.at(-1)?.requestAuthentication?.rules.length ?? 0) === 2, { what: 'the backend snapshot to hold two jwt rules' });
    const rules = applied.at(-1)!.requestAuthentication!.rules;
    const byIssuer = new Map(rules.map((r) => [r.issuer, r]));
    assert.equal(byIssuer.get('https://inline.example')?.jwks, jwks);
    assert.equal(byIssuer.get('https://remote.example')?.jwksUri, 'https://remote.example/jwks.json');
    assert.equal(byIssuer.get('https://from-file.example'), undefined);
    const skipped = plane.kubernetes!.skipped.find((s) => s.object === 'kubernetes:RequestAuthentication/shop/from-file');
    assert.ok(skipped, 'the jwksFile policy is skipped');
    assert.match(skipped.problems[0]!.message, /not read from a Kubernetes object/);
    assert.ok(logs.some((l) => l.includes('skipping kubernetes:RequestAuthentication/shop/from-file')));
  });
});
