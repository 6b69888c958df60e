// A request addressed to one instance of a service (its app's address or its sidecar's,
// the "pod IP" of a Kubernetes mesh) goes through the mesh to that instance, and the
// service's routes, which the Gateway API binds to the service's name, do not apply
// (the conformance suite's MeshFrontend). An address that is no instance of the mesh is
// refused with unknown-address: the HTTP proxy listener is never an open relay.
// Snapshots come from the real compiler, as the control plane would send them.
import { plainEndpoints } from '../helpers/test-identity.js';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, test } from 'node:test';
import type { ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { config, route, service } from '../control/helpers.js';
import { closeServer, get, listenHttp, startHttpProxySidecar } from '../helpers/proxy-pair.js';

let v1: { server: http.Server; port: number };
let v2: { server: http.Server; port: number };
let s: Sidecar;
/** Where api-v2's app says it listens (only an address to match: its sidecar, here the app itself, takes the request). */
const V2_APP = { host: '127.0.0.1', port: 45_002 };

before(async () => {
  v1 = await listenHttp((_req, res) => res.end('v1'));
  v2 = await listenHttp((_req, res) => res.end('v2'));
  s = await startHttpProxySidecar('caller');
  const info: ProxyInfo = {
    id: 'caller-0',
    service: 'caller',
    version: 'default',
    kind: 'sidecar',
    admin: s.addresses.admin!,
    httpProxy: s.addresses.httpProxy,
    upstreams: [],
    pid: process.pid,
  };
  const mesh = config(
    [service('api', { versions: ['v1', 'v2'] }), service('caller', { upstreams: ['api'] })],
    [
      route('api-marked', 'api', [
        {
          backendRefs: [{ name: 'api-v1', weight: 1 }],
          filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-header-set', value: 'set' }] } }],
        },
      ]),
    ],
  );
  const instances = [
    { id: 'api-v1-0', service: 'api', version: 'v1', inbound: { host: '127.0.0.1', port: v1.port }, status: 'healthy' as const },
    { id: 'api-v2-0', service: 'api', version: 'v2', inbound: { host: '127.0.0.1', port: v2.port }, app: V2_APP, status: 'healthy' as const },
  ];
  s.apply({ version: 1, ...compileSnapshot({ config: plainEndpoints(mesh), instances, proxy: info }) });
});

after(async () => {
  await s.close();
  await closeServer(v1.server);
  await closeServer(v2.server);
});

const viaProxy = (host: string) => get(s.addresses.httpProxy!.port, '/', { host });

test("a request to the service takes the service's routes", async () => {
  const r = await viaProxy('api');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'v1', 'the route sends everything to v1');
  assert.equal(r.headers['x-header-set'], 'set');
});

test("a request to an instance's app address reaches that instance, without the service's routes", async () => {
  const r = await viaProxy(`${V2_APP.host}:${V2_APP.port}`);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'v2', 'the addressed instance, though the route sends the service to v1');
  assert.equal(r.headers['x-header-set'], undefined, 'the route did not apply');
});

test("a request to an instance's sidecar address reaches that instance too", async () => {
  const r = await viaProxy(`127.0.0.1:${v1.port}`);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'v1');
  assert.equal(r.headers['x-header-set'], undefined);
});

test('an address that is no instance of the mesh is refused, never relayed', async () => {
  for (const host of ['127.0.0.1:9', '10.1.2.3', '10.1.2.3:8080', '[::1]:9']) {
    const r = await viaProxy(host);
    assert.equal(r.status, 403, host);
    assert.equal(r.headers['trellis-error'], 'unknown-address', host);
  }
});
