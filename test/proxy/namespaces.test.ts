// Namespaces through real sidecars, on snapshots from the real loader and compiler
// (test/fixtures/config/namespaces, MeshConsumerRoute's shape): a caller in echo's own
// namespace gets the producer route, a caller in the consumer namespace its consumer
// route; host names resolve as Kubernetes DNS does for the caller's namespace; a
// backendRef across namespaces without a ReferenceGrant answers 500 for its share.
import { plainEndpoints } from '../helpers/test-identity.js';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { FIXTURES } from '../config/helpers.js';
import { closeServer, get, listenHttp, startHttpProxySidecar } from '../helpers/proxy-pair.js';

const apps: { server: http.Server; port: number }[] = [];
const sidecars: Sidecar[] = [];
const proxies: Record<string, Sidecar> = {};

async function sidecar(service: string): Promise<Sidecar> {
  const s = await startHttpProxySidecar(service);
  sidecars.push(s);
  return s;
}

before(async () => {
  const loaded = await loadConfig([join(FIXTURES, 'namespaces/mesh.yaml')]);
  assert.deepEqual(loaded.problems, []);
  const app = async (answer: string) => {
    const a = await listenHttp((_req, res) => res.end(answer));
    apps.push(a);
    return a.port;
  };
  // The apps answer who they are; the endpoints are the apps themselves (no inbound sidecar needed here).
  const instances: RoutableInstance[] = [
    { id: 'echo.mesh-v1-0', service: 'echo.mesh', version: 'v1', inbound: { host: '127.0.0.1', port: await app('mesh/echo v1') }, status: 'healthy' },
    { id: 'echo.mesh-v2-0', service: 'echo.mesh', version: 'v2', inbound: { host: '127.0.0.1', port: await app('mesh/echo v2') }, status: 'healthy' },
    { id: 'echo-v1-0', service: 'echo-v1', version: 'default', inbound: { host: '127.0.0.1', port: await app('default/echo-v1') }, status: 'healthy' },
  ];
  for (const service of ['a.mesh', 'b.consumer']) {
    const s = await sidecar(service);
    const info: ProxyInfo = {
      id: `${service}-0`,
      service,
      version: 'default',
      kind: 'sidecar',
      admin: s.addresses.admin!,
      httpProxy: s.addresses.httpProxy!,
      upstreams: [],
      pid: process.pid,
    };
    s.apply({ version: 1, ...compileSnapshot({ config: plainEndpoints(loaded.config!), instances, proxy: info }) });
    proxies[service] = s;
  }
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const a of apps) await closeServer(a.server);
});

/** A request through `caller`'s HTTP proxy listener with this Host. */
const call = (caller: string, host: string, path = '/') => get(proxies[caller]!.addresses.httpProxy!.port, path, { host });

describe('namespaces through sidecars', () => {
  it('gives callers in two namespaces different routes for one Service (MeshConsumerRoute)', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await call('a.mesh', 'echo')).body, 'mesh/echo v1', 'the producer route, from echo’s own namespace');
      assert.equal((await call('b.consumer', 'echo.mesh')).body, 'mesh/echo v2', 'the consumer route replaces it for namespace consumer');
    }
  });

  it('resolves svc, svc.ns, svc.ns.svc and svc.ns.svc.cluster.local, with a port, for the caller namespace', async () => {
    for (const host of ['echo', 'echo.mesh', 'echo.mesh.svc', 'echo.mesh.svc.cluster.local', 'ECHO.mesh.svc.cluster.local.:80', 'echo.mesh:8080']) {
      const r = await call('a.mesh', host);
      assert.equal(r.status, 200, host);
      assert.equal(r.body, 'mesh/echo v1', host);
    }
    const r = await call('b.consumer', 'echo.mesh.svc.cluster.local');
    assert.equal(r.body, 'mesh/echo v2');
  });

  it('reads a bare name in the caller namespace: echo is no service of namespace consumer', async () => {
    const r = await call('b.consumer', 'echo');
    assert.equal(r.status, 503);
    assert.equal(r.headers['trellis-error'], 'unknown-service');
  });

  it('does not reach echo-v1 of default by echo-v1.<another namespace>', async () => {
    assert.equal((await call('a.mesh', 'echo-v1.default')).body, 'default/echo-v1');
    assert.equal((await call('a.mesh', 'echo-v1.default.svc.cluster.local')).body, 'default/echo-v1');
    for (const host of ['echo-v1.mesh', 'echo-v1', 'echo-v1.consumer', 'echo-v1.mesh.svc.cluster.local', 'echo.default', 'echo.mesh.svc.other.domain']) {
      const r = await call('a.mesh', host);
      assert.equal(r.status, 503, host);
      assert.equal(r.headers['trellis-error'], 'unknown-service', host);
    }
  });

  it('answers 500 invalid-backend for a backendRef into a namespace that grants nothing', async () => {
    const r = await call('b.consumer', 'echo.mesh', '/ungranted');
    assert.equal(r.status, 500);
    assert.equal(r.headers['trellis-error'], 'invalid-backend');
    assert.match(r.body, /no ReferenceGrant there lets HTTPRoutes of namespace consumer reach it/);
    // The same service, reached directly by the caller, is fine: only the route's reference is refused.
    assert.equal((await call('b.consumer', 'echo-v1.default')).body, 'default/echo-v1');
  });
});
