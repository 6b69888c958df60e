// The HTTP proxy listener (TRELLIS_HTTP_PROXY, Host names the service) reaches only the
// services the instance declares as upstreams: a sidecar whose service declares none
// reaches none, and a request for any other service is refused with unknown-service.
// Snapshots come from the real compiler, as the control plane would send them.
import { plainEndpoints } from '../helpers/test-identity.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { ProxyInfo } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { config, service } from '../control/helpers.js';
import { closeServer, get, listenHttp, startHttpProxySidecar } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
const sidecars: Sidecar[] = [];

before(async () => {
  app = await listenHttp((_req, res) => res.end('api'));
});

after(async () => {
  for (const s of sidecars) await s.close();
  await closeServer(app.server);
});

const mesh = () => config([service('api'), service('caller', { upstreams: ['api'] }), service('loner'), service('db', { protocol: 'tcp' })]);

/** A sidecar of `svc` with only an HTTP proxy listener, on the snapshot the compiler makes for it. */
async function sidecarOf(svc: string): Promise<Sidecar> {
  const s = await startHttpProxySidecar(svc);
  sidecars.push(s);
  const info: ProxyInfo = {
    id: `${svc}-0`,
    service: svc,
    version: 'default',
    kind: 'sidecar',
    app: { host: '127.0.0.1', port: 1 },
    inbound: { host: '127.0.0.1', port: 2 },
    admin: s.addresses.admin!,
    httpProxy: s.addresses.httpProxy,
    upstreams: [],
    pid: process.pid,
  };
  const instances = [{ id: 'api-0', service: 'api', version: 'default', inbound: { host: '127.0.0.1', port: app.port }, status: 'healthy' as const }];
  s.apply({ version: 1, ...compileSnapshot({ config: plainEndpoints(mesh()), instances, proxy: info }) });
  return s;
}

test('a service that declares no upstreams reaches no service through its HTTP proxy listener', async () => {
  const loner = await sidecarOf('loner');
  const r = await get(loner.addresses.httpProxy!.port, '/', { host: 'api' });
  assert.equal(r.status, 503);
  assert.equal(r.headers['trellis-error'], 'unknown-service');
  assert.match(JSON.parse(r.body).code, /^TRELLIS_E_UNKNOWN_SERVICE$/);
});

test('a declared upstream is reachable through the HTTP proxy listener; an undeclared one is not', async () => {
  const caller = await sidecarOf('caller');
  const ok = await get(caller.addresses.httpProxy!.port, '/', { host: 'api' });
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'api');
  const other = await get(caller.addresses.httpProxy!.port, '/', { host: 'loner' });
  assert.equal(other.status, 503);
  assert.equal(other.headers['trellis-error'], 'unknown-service');
});
