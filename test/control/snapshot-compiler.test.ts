import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileSnapshot, upstreamsFor, type RoutableInstance } from '../../src/control/compile/compiler.js';
import { SnapshotVersions } from '../../src/control/distribute/snapshot-versions.js';
import { stableStringify } from '../../src/control/stable-json.js';
import type { HealthStatus } from '../../src/api/admin.js';
import { config, gateway, listeners, route, service, sidecar } from './helpers.js';

const mesh = config(
  [
    service('frontend', { upstreams: ['backend'] }),
    service('backend', { versions: ['v1', 'v2'], upstreams: ['postgres'] }),
    service('postgres', { protocol: 'tcp' }),
    service('redis', { protocol: 'tcp' }),
    service('admin'),
  ],
  [route('split', 'backend', [{ backendRefs: [{ name: 'backend-v1', weight: 3 }, { name: 'backend-v2' }] }])],
);

let port = 40000;
function inst(id: string, svc: string, version: string, status: HealthStatus): RoutableInstance {
  return { id, service: svc, version, status, inbound: { host: '127.0.0.1', port: port++ } };
}

test('a sidecar gets exactly the upstreams its service declares and its hello names', () => {
  const snap = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('frontend-0', 'frontend', 'default', { upstreams: listeners('redis') }) });
  assert.deepEqual(Object.keys(snap.upstreams), ['backend', 'redis']);
  assert.equal(snap.service, 'frontend');
  assert.equal(snap.inboundProtocol, 'http');
  const pg = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('postgres-0', 'postgres') });
  assert.deepEqual(pg.upstreams, {});
  assert.equal(pg.inboundProtocol, 'tcp');
});

test('hello upstreams that are not mesh services are left out', () => {
  assert.deepEqual(upstreamsFor(mesh, sidecar('p', 'postgres', 'default', { upstreams: listeners('ghost', 'redis') })), ['redis']);
});

test('an HTTP proxy listener reaches only the declared upstreams: none declared, none reachable', () => {
  const proxy = sidecar('r', 'redis', 'default', { httpProxy: { host: '127.0.0.1', port: 1 } });
  assert.deepEqual(upstreamsFor(mesh, proxy), []);
  assert.deepEqual(compileSnapshot({ config: mesh, instances: [], proxy }).upstreams, {});
  assert.deepEqual(upstreamsFor(mesh, sidecar('f', 'frontend', 'default', { httpProxy: { host: '127.0.0.1', port: 1 } })), ['backend']);
  // A gateway (or an outbound-only proxy) with an HTTP proxy listener: only what its hello names.
  assert.deepEqual(upstreamsFor(mesh, { ...gateway('edge', ['frontend']), httpProxy: { host: '127.0.0.1', port: 1 } }), ['frontend']);
});

test("every snapshot lists the mesh's services: the callers an inbound listener accepts", () => {
  const snap = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('postgres-0', 'postgres') });
  assert.deepEqual(snap.meshServices, ['admin', 'backend', 'frontend', 'postgres', 'redis', 'trellis-ingress']);
  assert.deepEqual(compileSnapshot({ config: mesh, instances: [], proxy: gateway('ingress', ['frontend']) }).meshServices, snap.meshServices);
});

test('a gateway gets the services named in its hello', () => {
  const snap = compileSnapshot({ config: mesh, instances: [], proxy: gateway('ingress', ['frontend', 'backend']) });
  assert.deepEqual(Object.keys(snap.upstreams), ['backend', 'frontend']);
  assert.equal(snap.service, 'ingress');
});

test('backends hold only healthy endpoints: unknown and unhealthy instances are not routable', () => {
  const instances = [
    inst('backend-v1-0', 'backend', 'v1', 'healthy'),
    inst('backend-v1-1', 'backend', 'v1', 'unknown'),
    inst('backend-v2-0', 'backend', 'v2', 'unhealthy'),
    inst('backend-v2-1', 'backend', 'v2', 'healthy'),
  ];
  const snap = compileSnapshot({ config: mesh, instances, proxy: sidecar('frontend-0', 'frontend') });
  const b = snap.upstreams.backend!;
  assert.deepEqual(Object.keys(b.backends), ['backend', 'backend-v1', 'backend-v2']);
  assert.deepEqual(
    b.backends.backend!.endpoints.map((e) => e.id),
    ['backend-v1-0', 'backend-v2-1'],
  );
  assert.deepEqual(
    b.backends['backend-v1']!.endpoints.map((e) => e.id),
    ['backend-v1-0'],
  );
  assert.deepEqual(
    b.backends['backend-v2']!.endpoints.map((e) => e.id),
    ['backend-v2-1'],
  );
  const ep = b.backends['backend-v1']!.endpoints[0]!;
  assert.deepEqual(ep, { id: 'backend-v1-0', host: '127.0.0.1', port: instances[0]!.inbound!.port, version: 'v1' });
});

test('an upstream carries its protocol and its compiled routes; no routes means an empty list', () => {
  const snap = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('backend-v1-0', 'backend', 'v1') });
  assert.deepEqual(snap.upstreams.postgres, {
    service: 'postgres',
    protocol: 'tcp',
    routes: [],
    backends: {
      postgres: { name: 'postgres', endpoints: [], mtls: { identities: ['spiffe://cluster.local/ns/default/sa/postgres'] } },
      'postgres-default': {
        name: 'postgres-default',
        endpoints: [],
        failover: 'postgres',
        mtls: { identities: ['spiffe://cluster.local/ns/default/sa/postgres'] },
      },
    },
  });
  const front = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('frontend-0', 'frontend') });
  assert.deepEqual(front.upstreams.backend!.routes, [
    {
      name: 'default/split/rule/0',
      match: { path: { type: 'PathPrefix', value: '/' } },
      backends: [
        { backend: 'backend-v1', weight: 3 },
        { backend: 'backend-v2', weight: 1 },
      ],
    },
  ]);
});

test('a route may send to another service; unresolvable backends stay in the route only', () => {
  const cfg = config([...mesh.services], [route('r', 'backend', [{ backendRefs: [{ name: 'admin' }, { name: 'nowhere' }] }])]);
  const snap = compileSnapshot({ config: cfg, instances: [inst('admin-0', 'admin', 'default', 'healthy')], proxy: sidecar('frontend-0', 'frontend') });
  const b = snap.upstreams.backend!;
  assert.deepEqual(
    b.routes[0]!.backends.map((x) => x.backend),
    ['admin', 'nowhere'],
  );
  assert.deepEqual(
    b.backends.admin!.endpoints.map((e) => e.id),
    ['admin-0'],
  );
  assert.equal(b.backends.nowhere, undefined);
});

test('compiling the same inputs gives byte-identical snapshots whatever the instance order', () => {
  const a = inst('backend-v1-0', 'backend', 'v1', 'healthy');
  const b = inst('backend-v2-0', 'backend', 'v2', 'healthy');
  const proxy = sidecar('frontend-0', 'frontend');
  const one = compileSnapshot({ config: mesh, instances: [a, b], proxy });
  const two = compileSnapshot({ config: mesh, instances: [b, a], proxy });
  assert.equal(JSON.stringify(one), JSON.stringify(two));
});

test('the snapshot version moves only when the content changes, separately per proxy', () => {
  const versions = new SnapshotVersions();
  const proxy = sidecar('frontend-0', 'frontend');
  const healthy = [inst('backend-v1-0', 'backend', 'v1', 'healthy')];
  const first = versions.stamp('frontend-0', compileSnapshot({ config: mesh, instances: [], proxy }));
  assert.deepEqual([first.snapshot.version, first.changed], [1, true]);
  const same = versions.stamp('frontend-0', compileSnapshot({ config: mesh, instances: [], proxy }));
  assert.deepEqual([same.snapshot.version, same.changed], [1, false]);
  const next = versions.stamp('frontend-0', compileSnapshot({ config: mesh, instances: healthy, proxy }));
  assert.deepEqual([next.snapshot.version, next.changed], [2, true]);
  // An unroutable instance does not change what the proxy gets.
  const withUnknown = [...healthy, inst('backend-v2-0', 'backend', 'v2', 'unknown')];
  assert.equal(versions.stamp('frontend-0', compileSnapshot({ config: mesh, instances: withUnknown, proxy })).changed, false);
  const other = versions.stamp('backend-v1-0', compileSnapshot({ config: mesh, instances: healthy, proxy: sidecar('backend-v1-0', 'backend', 'v1') }));
  assert.equal(other.snapshot.version, 1);
});

test('stableStringify ignores key order', () => {
  assert.equal(stableStringify({ b: 1, a: { d: [1, { y: 1, x: 2 }], c: null } }), stableStringify({ a: { c: null, d: [1, { x: 2, y: 1 }] }, b: 1 }));
});

test("a service's upgrade protocols reach its callers' upstream entry and its own inbound listener; absent, neither carries any", () => {
  const m = config([service('web', { upstreams: ['chat'] }), service('chat', { upgrades: ['websocket', 'spdy/3.1'] })]);
  const web = compileSnapshot({ config: m, instances: [], proxy: sidecar('web-0', 'web') });
  assert.deepEqual(web.upstreams.chat!.upgrades, ['websocket', 'spdy/3.1']);
  assert.equal(web.inboundUpgrades, undefined, 'web declares none: the proxy applies the default');
  const chat = compileSnapshot({ config: m, instances: [], proxy: sidecar('chat-0', 'chat') });
  assert.deepEqual(chat.inboundUpgrades, ['websocket', 'spdy/3.1']);
});

test('mTLS: STRICT by default; PeerAuthentication port-level > Service > namespace-wide > mesh; DISABLE means plaintext to it', () => {
  const pa = (name: string, mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE', target?: string, ports?: Record<string, 'STRICT' | 'PERMISSIVE' | 'DISABLE'>) => ({
    file: 'pa.yaml',
    resource: {
      metadata: { name },
      spec: {
        ...(target !== undefined ? { targetRefs: [{ group: '', kind: 'Service', name: target }] } : {}),
        mtls: { mode },
        ...(ports !== undefined ? { portLevelMtls: Object.fromEntries(Object.entries(ports).map(([p, m]) => [p, { mode: m }])) } : {}),
      },
    },
  });
  const plain = compileSnapshot({ config: mesh, instances: [], proxy: sidecar('backend-v1-0', 'backend', 'v1') });
  assert.deepEqual(plain.mtls, { mode: 'STRICT' });
  assert.deepEqual(plain.upstreams.postgres!.backends.postgres!.mtls, { identities: ['spiffe://cluster.local/ns/default/sa/postgres'] });

  const withPolicies = {
    ...mesh,
    mtlsMode: 'PERMISSIVE' as const,
    peerAuthentications: [pa('ns', 'DISABLE'), pa('pg', 'STRICT', 'postgres'), pa('be', 'STRICT', 'backend', { '80': 'PERMISSIVE' })],
  };
  const be = compileSnapshot({ config: withPolicies, instances: [], proxy: sidecar('backend-v1-0', 'backend', 'v1') });
  assert.deepEqual(be.mtls, { mode: 'PERMISSIVE' }, 'port-level wins over the Service-targeted policy');
  assert.ok(be.upstreams.postgres!.backends.postgres!.mtls !== undefined, 'a Service-targeted STRICT wins over the namespace-wide DISABLE');
  const fe = compileSnapshot({ config: withPolicies, instances: [], proxy: sidecar('frontend-0', 'frontend') });
  assert.deepEqual(fe.mtls, { mode: 'DISABLE' }, 'namespace-wide wins over the mesh');
  const meshOnly = compileSnapshot({ config: { ...mesh, mtlsMode: 'DISABLE' as const }, instances: [], proxy: sidecar('frontend-0', 'frontend') });
  assert.deepEqual(meshOnly.mtls, { mode: 'DISABLE' });
  assert.equal(meshOnly.upstreams.backend!.backends.backend!.mtls, undefined, 'plaintext to a DISABLE destination');
});
