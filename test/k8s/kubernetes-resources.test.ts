// The API's objects through the loader's checks (src/control/sources/kubernetes-resources.ts),
// as a pure function: hostile objects are skipped, never thrown on; what passes is the
// loader's resource with defaults; the server's fields are dropped.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clusterResources } from '../../src/control/sources/kubernetes-resources.js';
import { DEFAULT_HEALTH, type ControlConfig } from '../../src/control/sources/mesh-config.js';
import type { KubeObject } from '../../src/k8s/source/reflector.js';

const config: ControlConfig = {
  services: [{ name: 'backend', namespace: 'shop', protocol: 'http', upstreams: [], health: DEFAULT_HEALTH, versions: [] }],
  routes: [],
};

describe('clusterResources', () => {
  it('skips hostile objects without throwing, each under its kind', () => {
    const junk: unknown[] = [
      null,
      'a string',
      [],
      { metadata: null, spec: null },
      { metadata: { name: 7, namespace: ['x'] }, spec: {} },
      { metadata: { name: 'x'.repeat(10_000), namespace: 'shop' }, spec: { parentRefs: [], rules: [] } },
      JSON.parse('{"metadata":{"name":"proto","namespace":"shop","__proto__":{"admin":true}},"spec":{"__proto__":{"rules":[]}}}'),
      { metadata: { name: 'deep', namespace: 'shop' }, spec: { parentRefs: [{ name: 'backend', extra: { a: { b: { c: {} } } } }], rules: [] } },
    ];
    const objects = new Map<string, KubeObject[]>([
      ['HTTPRoute', junk as KubeObject[]],
      ['AuthorizationPolicy', junk as KubeObject[]],
    ]);
    const { resources, skipped } = clusterResources(objects, config);
    assert.equal(resources.routes.length, 0);
    assert.equal(resources.authorizationPolicies.length, 0);
    assert.equal(skipped.length, junk.length * 2);
    for (const s of skipped) {
      assert.match(s.object, /^kubernetes:(HTTPRoute|AuthorizationPolicy)\/[a-z0-9.<>-]+\/[a-z0-9.<>-]+$/);
      assert.ok(s.problems.length > 0);
    }
    assert.equal(({} as { admin?: boolean }).admin, undefined, 'no prototype was polluted');
  });

  it('passes the resource with the schema’s defaults and without the server’s fields; the namespace is the object’s', () => {
    const route: KubeObject = {
      metadata: { name: 'r', namespace: 'shop', uid: 'u', resourceVersion: '5', managedFields: [{}], creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { parentRefs: [{ name: 'backend' }], rules: [{ backendRefs: [{ name: 'backend' }] }] },
      status: { parents: [] },
    };
    const { resources, skipped } = clusterResources(new Map([['HTTPRoute', [route]]]), config);
    assert.deepEqual(skipped, []);
    const r = resources.routes[0]!;
    assert.equal(r.file, 'kubernetes:HTTPRoute/shop/r');
    assert.deepEqual(r.resource.metadata, { name: 'r', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' });
    assert.equal(r.resource.spec.parentRefs[0]!.kind, 'Service', 'the schema default');
    assert.equal((r.resource as unknown as { status?: unknown }).status, undefined);
    // In another namespace, the same route names no service there.
    const elsewhere = clusterResources(new Map([['HTTPRoute', [{ ...route, metadata: { name: 'r', namespace: 'billing' } }]]]), config);
    assert.equal(elsewhere.resources.routes.length, 0);
    assert.match(elsewhere.skipped[0]!.problems[0]!.message, /namespace billing/);
  });
});
