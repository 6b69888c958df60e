// Unit tests of desiredGatewayStatus (src/k8s/source/gateway-status.ts): what a Gateway's
// status says for each verdict (in force, listeners refused with RefNotPermitted, skipped,
// not judged yet, another class), supportedKinds per protocol and allowedRoutes.kinds,
// attachedRoutes, lastTransitionTime kept while a condition's status stays, and junk
// specs answered without throwing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { desiredGatewayStatus, type GatewayWorld } from '../../src/k8s/source/gateway-status.js';
import type { KubeObject } from '../../src/k8s/source/reflector.js';

const T0 = '2026-12-01T00:00:00Z';
const T1 = '2026-12-02T00:00:00Z';

function gateway(listeners: unknown, extra: Partial<KubeObject> = {}, className = 'trellis'): KubeObject {
  return { metadata: { name: 'edge', namespace: 'shop', generation: 3 }, spec: { gatewayClassName: className, listeners }, ...extra };
}

function world(over: Partial<GatewayWorld> = {}): GatewayWorld {
  return { verdict: () => ({ inForce: true }), refused: () => [], attachedRoutes: () => 0, ...over };
}

type Cond = { type: string; status: string; reason: string; observedGeneration: number; lastTransitionTime: string };
type Listener = { name: string; supportedKinds: { kind: string }[]; attachedRoutes: number; conditions: Cond[] };
const conds = (c: unknown): string[][] => (c as Cond[]).map((x) => [x.type, x.status, x.reason]);

describe('desiredGatewayStatus', () => {
  const listeners = [
    { name: 'web', port: 80, protocol: 'HTTP' },
    { name: 'grpc-only', port: 81, protocol: 'HTTP', allowedRoutes: { kinds: [{ kind: 'GRPCRoute' }] } },
    { name: 'passthrough', port: 443, protocol: 'TLS', tls: { mode: 'Passthrough' } },
    { name: 'site', port: 8443, protocol: 'HTTPS' },
  ];

  it('a Gateway in force: kinds per listener, attached routes, a refused listener RefNotPermitted', () => {
    const s = desiredGatewayStatus(
      gateway(listeners),
      world({
        refused: () => [{ listener: 'site', reason: 'RefNotPermitted', message: 'no ReferenceGrant' }],
        attachedRoutes: (_ns, _n, l) => (l === 'web' ? 2 : 0),
      }),
      T0,
    )!;
    assert.deepEqual(conds(s.conditions), [
      ['Accepted', 'True', 'ListenersNotValid'],
      ['Programmed', 'True', 'Programmed'],
    ]);
    assert.ok((s.conditions as Cond[]).every((c) => c.observedGeneration === 3 && c.lastTransitionTime === T0));
    const ls = s.listeners as Listener[];
    assert.deepEqual(
      ls.map((l) => [l.name, l.supportedKinds.map((k) => k.kind).join('+'), l.attachedRoutes]),
      [
        ['web', 'HTTPRoute+GRPCRoute', 2],
        ['grpc-only', 'GRPCRoute', 0],
        ['passthrough', 'TLSRoute', 0],
        ['site', 'HTTPRoute+GRPCRoute', 0],
      ],
    );
    assert.deepEqual(conds(ls[3]!.conditions), [
      ['Accepted', 'True', 'Accepted'],
      ['Programmed', 'False', 'Invalid'],
      ['ResolvedRefs', 'False', 'RefNotPermitted'],
      ['Conflicted', 'False', 'NoConflicts'],
    ]);
  });

  it('keeps lastTransitionTime while a status stays, moves it when it flips', () => {
    const refusing = world({ refused: () => [{ listener: 'site', reason: 'InvalidCertificateRef', message: 'missing' }] });
    const first = desiredGatewayStatus(gateway(listeners), refusing, T0)!;
    const fixed = desiredGatewayStatus(gateway(listeners, { status: first }), world(), T1)!;
    const site = (fixed.listeners as Listener[])[3]!;
    assert.deepEqual(
      site.conditions.map((c) => [c.type, c.status, c.lastTransitionTime]),
      [
        ['Accepted', 'True', T0],
        ['Programmed', 'True', T1],
        ['ResolvedRefs', 'True', T1],
        ['Conflicted', 'False', T0],
      ],
    );
    assert.equal((fixed.conditions as Cond[])[0]!.reason, 'Accepted');
    assert.equal((fixed.conditions as Cond[])[0]!.lastTransitionTime, T0, 'Accepted stayed True');
    // The same world again: the very status it holds (nothing to write).
    assert.deepEqual(desiredGatewayStatus(gateway(listeners, { status: fixed }), world(), '2027-01-01T00:00:00Z'), fixed);
  });

  it('a skipped Gateway is Accepted and Programmed False Invalid, with no listeners; other fields of status are kept', () => {
    const s = desiredGatewayStatus(
      gateway(listeners, { status: { addresses: [{ value: '10.0.0.1' }] } }),
      world({ verdict: () => ({ inForce: false, problem: 'spec.listeners[0].port: required' }) }),
      T0,
    )!;
    assert.deepEqual(conds(s.conditions), [
      ['Accepted', 'False', 'Invalid'],
      ['Programmed', 'False', 'Invalid'],
    ]);
    assert.match((s.conditions as { message: string }[])[0]!.message, /spec\.listeners\[0\]\.port: required/);
    assert.deepEqual(s.listeners, []);
    assert.deepEqual(s.addresses, [{ value: '10.0.0.1' }]);
  });

  it('nothing for another class or a Gateway not judged yet; junk answered without throwing', () => {
    assert.equal(desiredGatewayStatus(gateway(listeners, {}, 'istio'), world(), T0), undefined);
    assert.equal(desiredGatewayStatus(gateway(listeners), world({ verdict: () => undefined }), T0), undefined);
    for (const junk of [null, 'x', 7, [null, 'y', { name: 5, protocol: {} }], { a: 1 }]) {
      const s = desiredGatewayStatus(gateway(junk, { status: 'nope' as never, metadata: { name: 'edge' } }), world(), T0);
      assert.ok(s && Array.isArray(s.listeners));
    }
  });
});
