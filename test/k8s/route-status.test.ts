// desiredParents (src/k8s/source/route-status.ts) as a function of a route and what it is
// judged against: Gateway parents (a listener that allows the route, one whose
// allowedRoutes does not: NotAllowedByListeners, a sectionName no listener has:
// NoMatchingParent, a Gateway Trellis does not serve: no entry of ours), a route the
// loader skipped (Accepted False UnsupportedValue), InvalidKind backends, duplicate
// parentRefs, and lastTransitionTime kept while a condition's status stays.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONTROLLER_NAME, desiredParents, RouteStatusWriter, sameJson, type RouteWorld, type StatusListener } from '../../src/k8s/source/route-status.js';
import { KubeStatusError, type KubeObject } from '../../src/k8s/source/reflector.js';
import { eventually } from '../helpers/eventually.js';

const T0 = '2026-12-01T00:00:00Z';
const T1 = '2026-12-06T00:00:00Z';

function world(o: { gateways?: Record<string, StatusListener[]>; skipped?: string } = {}): RouteWorld {
  return {
    hasService: (ns, name) => ns === 'shop' && ['backend', 'frontend'].includes(name),
    gateway: (ns, name) => o.gateways?.[`${ns}/${name}`],
    backend: (ref) =>
      (ref.kind ?? 'Service') !== 'Service'
        ? { reason: 'InvalidKind', message: 'not a Service' }
        : ref.name === 'ghost'
          ? { reason: 'BackendNotFound', message: 'no ghost' }
          : undefined,
    skipped: () => o.skipped,
  };
}

function route(parentRefs: unknown[], status?: unknown, backendRefs: unknown[] = [{ name: 'backend' }]): KubeObject {
  return {
    metadata: { name: 'r', namespace: 'shop', generation: 4, resourceVersion: '9' },
    spec: { parentRefs, rules: [{ backendRefs }] },
    ...(status !== undefined ? { status } : {}),
  };
}

type Entry = {
  parentRef: unknown;
  controllerName: string;
  conditions: { type: string; status: string; reason: string; observedGeneration: number; lastTransitionTime: string }[];
};
const brief = (parents: unknown[]): string[] =>
  (parents as Entry[]).map(
    (p) => `${p.controllerName === CONTROLLER_NAME ? '' : `${p.controllerName} `}${p.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`).join(' ')}`,
  );

const gw = (name: string, ns = 'edge') => ({ group: 'gateway.networking.k8s.io', kind: 'Gateway', name, namespace: ns });

describe('route status: desiredParents', () => {
  const gateways = {
    'edge/public': [
      { name: 'http', port: 80, from: 'All' as const },
      { name: 'local', port: 8080, from: 'Same' as const },
    ],
    'edge/tls-only': [{ name: 'tls', port: 443, from: 'All' as const, kinds: ['TLSRoute'] }],
  };

  it('judges Gateway parents by their listeners, and leaves Gateways it does not serve alone', () => {
    const parents = desiredParents(
      'HTTPRoute',
      route([gw('public'), { ...gw('public'), sectionName: 'local' }, { ...gw('public'), sectionName: 'nope' }, gw('tls-only'), gw('someone-elses')]),
      world({ gateways }),
      T1,
    );
    assert.deepEqual(brief(parents), [
      'Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs',
      'Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs',
      'Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs',
      'Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs',
    ]);
    assert.ok((parents as Entry[]).every((p) => p.conditions.every((c) => c.observedGeneration === 4 && c.lastTransitionTime === T1)));
  });

  it('a route the loader skipped is not Accepted, with why; a Service parent that does not exist is NoMatchingParent', () => {
    const parents = desiredParents(
      'HTTPRoute',
      route([
        { kind: 'Service', name: 'backend' },
        { kind: 'Service', name: 'gone' },
      ]),
      world({ skipped: 'spec.rules[0]: bad' }),
      T1,
    );
    assert.deepEqual(brief(parents), [
      'Accepted=False/UnsupportedValue ResolvedRefs=True/ResolvedRefs',
      'Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs',
    ]);
    assert.match(JSON.stringify(parents), /the route is not in force: spec.rules\[0\]: bad/);
  });

  it('a backend that is not a Service is InvalidKind; the first unresolved backendRef is named', () => {
    const parents = desiredParents(
      'HTTPRoute',
      route([{ kind: 'Service', name: 'backend' }], undefined, [{ name: 'backend' }, { name: 'x', kind: 'ConfigMap' }]),
      world(),
      T1,
    );
    assert.deepEqual(brief(parents), ['Accepted=True/Accepted ResolvedRefs=False/InvalidKind']);
    assert.match(JSON.stringify(parents), /spec.rules\[0\].backendRefs\[1\]: not a Service/);
  });

  it('keeps other controllers’ entries, drops its own for parentRefs gone, lists a repeated parentRef once', () => {
    const other = { parentRef: { name: 'backend' }, controllerName: 'example.com/x', conditions: [] };
    const stale = { parentRef: { kind: 'Service', name: 'frontend' }, controllerName: CONTROLLER_NAME, conditions: [] };
    const parents = desiredParents(
      'HTTPRoute',
      route(
        [
          { kind: 'Service', name: 'backend' },
          { kind: 'Service', name: 'backend' },
        ],
        { parents: [other, stale] },
      ),
      world(),
      T1,
    );
    assert.deepEqual(brief(parents), ['example.com/x ', 'Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs']);
  });

  it('keeps lastTransitionTime while a status stays (then the same status is no write), moves it when the status changes', () => {
    const first = desiredParents('HTTPRoute', route([{ kind: 'Service', name: 'backend' }]), world(), T0);
    const same = desiredParents('HTTPRoute', route([{ kind: 'Service', name: 'backend' }], { parents: first }), world(), T1);
    assert.ok(sameJson(same, first), 'nothing to write');
    const changed = desiredParents('HTTPRoute', route([{ kind: 'Service', name: 'backend' }], { parents: first }, [{ name: 'ghost' }]), world(), T1) as Entry[];
    assert.deepEqual(
      changed[0]!.conditions.map((c) => [c.type, c.status, c.lastTransitionTime]),
      [
        ['Accepted', 'True', T0],
        ['ResolvedRefs', 'False', T1],
      ],
    );
  });

  it('takes any junk a route object holds without throwing', () => {
    for (const junk of [{}, { spec: null }, { spec: { parentRefs: 'x', rules: [null, 3] } }, { metadata: { name: 7 }, status: { parents: 'no' } }]) {
      assert.ok(Array.isArray(desiredParents('HTTPRoute', junk as KubeObject, world(), T1)));
    }
  });
});

describe('route status: the writer', () => {
  const routes = (n: number): KubeObject[] =>
    Array.from({ length: n }, (_, i) => ({
      metadata: { name: `r${i}`, namespace: 'shop', generation: 1, resourceVersion: String(i + 1) },
      spec: { parentRefs: [{ kind: 'Service', name: 'backend' }], rules: [{ backendRefs: [{ name: 'backend' }] }] },
    }));

  it('writes at most maxInFlight at once, and every route in the end; only while leading', async () => {
    let inFlight = 0;
    let most = 0;
    const written: string[] = [];
    let leading = false;
    const list = routes(20);
    const w = world();
    const writer = new RouteStatusWriter({
      call: async (method, path) => {
        assert.equal(method, 'PUT');
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        written.push(path);
        return {};
      },
      leading: () => leading,
      routes: () => new Map([['HTTPRoute', list]]),
      world: () => w,
      delayMs: 0,
      maxInFlight: 3,
    });
    writer.start();
    try {
      writer.schedule();
      await eventually(() => writer.counters.syncs === 0 && written.length === 0, { what: 'nothing while following' });
      leading = true;
      writer.schedule();
      await eventually(() => written.length === 20, { what: `all 20 written (${written.length})` });
      assert.equal(most, 3);
      assert.equal(new Set(written).size, 20);
      assert.equal(written[0], '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r0/status');
    } finally {
      writer.stop();
    }
  });

  it('a refused write is retried at the next look and logged a few times a minute, not once per route', async () => {
    const logs: string[] = [];
    let calls = 0;
    const writer = new RouteStatusWriter({
      call: async () => {
        calls++;
        throw new KubeStatusError(403, 'httproutes.gateway.networking.k8s.io "r" is forbidden');
      },
      leading: () => true,
      routes: () => new Map([['HTTPRoute', routes(30)]]),
      world: () => world(),
      log: (l) => void logs.push(l),
      delayMs: 0,
      maxInFlight: 100,
    });
    writer.start();
    try {
      await eventually(() => calls >= 30, { what: 'every route tried' });
      writer.schedule();
      await eventually(() => calls >= 60, { what: 'every route tried again' });
      assert.equal(logs.length, 5, logs.join('\n'));
      assert.equal(writer.counters.failures >= 60, true);
    } finally {
      writer.stop();
    }
  });
});
