// AuthorizationPolicies and RateLimitPolicies that target a Gateway (targetRefs kind
// Gateway) are judged by its gateway proxy at the edge, above `upstream` in the gateway
// stack: from the config files through the compiler to a real gateway in front of a STRICT
// sidecar. A refused request (403 forbidden, 429 rate-limited) never enters the mesh; a
// policy on the Gateway touches no service, and a namespace-wide one no Gateway.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type MeshConfig } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { closeServer, listenHttp, metricsText, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';
import { giveIdentity } from '../helpers/test-identity.js';

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services:
    - { name: web, protocol: http }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  listeners: [{ name: http, port: 8080, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  rules: [{ backendRefs: [{ name: web }] }]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-admin-from-outside }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin/*"] } }] }]
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: { name: edge-budget }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  limits: [{ name: per-minute, requests: 3, interval: 1m }]
---
# Namespace-wide (no targetRefs): the services' sidecars judge it, never the Gateway.
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-nothing-much }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/never"] } }] }]
`;

let dir: string;
let config: MeshConfig;
let app: { server: http.Server; port: number };
let appHits = 0;
let inbound: Sidecar;
let gw: Sidecar;
let port = 0;

function get(path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-edge-'));
  await writeFile(join(dir, 'mesh.yaml'), MESH);
  const loaded = await loadConfig([join(dir, 'mesh.yaml')]);
  assert.deepEqual(loaded.problems, []);
  config = loaded.config!;
  app = await listenHttp((_req, res) => {
    appHits++;
    res.end('ok');
  });
  inbound = await startInbound('web', 'default', app.port, 'http', { meshServices: ['web', 'edge'], mtls: 'STRICT' });
  gw = new Sidecar({
    service: 'edge',
    version: 'default',
    id: 'edge',
    kind: 'gateway',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
    gatewayListen: { ports: new Map([[8080, 0]]) },
  });
  await giveIdentity(gw, 'edge');
  await gw.start();
  const content = compileSnapshot({
    config,
    instances: [{ id: 'web-0', service: 'web', version: 'default', inbound: { host: '127.0.0.1', port: inbound.addresses.inbound!.port }, status: 'healthy' }],
    proxy: { id: 'edge', service: 'edge', version: 'default', kind: 'gateway', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
  });
  gw.apply({ version: 1, ...content } as Snapshot);
  await gw.whenGatewayApplied();
  port = gw.gatewayAddresses()['8080']!.port;
});

after(async () => {
  await gw?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
  await rm(dir, { recursive: true, force: true });
});

test('the compiler gives the Gateway its own policies and no service’s; the services keep theirs', () => {
  const edge = compileSnapshot({
    config,
    instances: [],
    proxy: { id: 'edge', service: 'edge', version: 'default', kind: 'gateway', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
  });
  assert.deepEqual(
    edge.authorization?.policies.map((p) => p.name),
    ['default/no-admin-from-outside'],
  );
  assert.deepEqual(
    edge.rateLimits?.limits.map((l) => l.id),
    ['default/edge-budget/per-minute'],
  );
  const web = compileSnapshot({
    config,
    instances: [],
    proxy: { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
  });
  assert.deepEqual(
    web.authorization?.policies.map((p) => p.name),
    ['default/deny-nothing-much'],
  );
  assert.equal(web.rateLimits, undefined);
});

test('at the edge: a denied path is 403 forbidden and never reaches the app; past the budget, 429 with Retry-After', async () => {
  const before = appHits;
  const denied = await get('/admin/users');
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['trellis-error'], 'forbidden');
  assert.equal(appHits, before, 'the refused request never entered the mesh');
  // The denied request spent no tokens: three pass, the fourth is limited.
  for (let i = 0; i < 3; i++) assert.equal((await get(`/page/${i}`)).status, 200);
  assert.equal(appHits, before + 3);
  const limited = await get('/page/4');
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['trellis-error'], 'rate-limited');
  assert.ok(Number(limited.headers['retry-after']) >= 1);
  assert.equal(appHits, before + 3);
});

test('requests at the edge are counted against the backend’s service, not the port’s route table', async () => {
  const text = await metricsText(gw);
  assert.match(text, /trellis_http_requests_total\{[^}]*direction="outbound"[^}]*destination="web"[^}]*status="200"[^}]*\} [1-9]/);
  assert.doesNotMatch(text, /destination="default\/edge\/8080"[^}]*status="200"/);
});
