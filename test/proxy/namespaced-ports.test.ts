// Namespaces and multi-port services together, through real sidecars, on snapshots from
// the real loader and compiler (test/fixtures/config/namespaced-ports): echo has two
// ports and lives in namespace shop. A caller reaches a port as `echo.shop:8080` (or, in
// shop, `echo:8080`); the host table finds the service, then the port picks its route
// table. The producer route bound to port 8080 applies there only; the consumer route of
// namespace default bound to port 80 applies to default's callers on port 80 only.
import { giveIdentity } from '../helpers/test-identity.js';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { InstancePort, ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import type { ControlConfig } from '../../src/control/sources/mesh-config.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { FIXTURES } from '../config/helpers.js';
import { closeServer, get, listenHttp, NO_CONTROL, quietLog } from '../helpers/proxy-pair.js';

const LOOPBACK = '127.0.0.1';
const apps: { server: http.Server; port: number }[] = [];
const sidecars: Sidecar[] = [];
const callers: Record<string, Sidecar> = {};

function sidecarOptions(service: string, extra: Partial<ConstructorParameters<typeof Sidecar>[0]> = {}): ConstructorParameters<typeof Sidecar>[0] {
  return {
    service,
    version: 'default',
    id: `${service}-0`,
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: LOOPBACK, port: 0 },
    accessLog: 'off',
    log: quietLog,
    ...extra,
  };
}

function info(s: Sidecar, service: string, extra: Partial<ProxyInfo> = {}): ProxyInfo {
  return { id: `${service}-0`, service, version: 'default', kind: 'sidecar', admin: s.addresses.admin!, upstreams: [], pid: process.pid, ...extra };
}

before(async () => {
  const loaded = await loadConfig([join(FIXTURES, 'namespaced-ports/mesh.yaml')]);
  assert.deepEqual(loaded.problems, []);
  assert.deepEqual(loaded.warnings ?? [], []);
  const config: ControlConfig = loaded.config!;

  // echo.shop: an app port per service port, answering which one it is, behind its own sidecar.
  const ports: InstancePort[] = [];
  for (const [port, name] of [
    [80, 'http'],
    [8080, 'http-alt'],
  ] as const) {
    const app = await listenHttp((_req, res) => res.end(`shop/echo:${name}`));
    apps.push(app);
    ports.push({ port, app: { host: LOOPBACK, port: app.port }, inbound: { host: LOOPBACK, port: 0 } });
  }
  const echo = new Sidecar(sidecarOptions('echo.shop', { ports }));
  sidecars.push(echo);
  await giveIdentity(echo, 'echo.shop');
  await echo.start();
  const listening = echo.addresses.ports!;
  const instances: RoutableInstance[] = [
    {
      id: 'echo.shop-0',
      service: 'echo.shop',
      version: 'default',
      inbound: listening[0]!.inbound,
      app: listening[0]!.app,
      ports: listening,
      status: 'healthy',
    },
  ];
  echo.apply({ version: 1, ...compileSnapshot({ config, instances, proxy: info(echo, 'echo.shop', { ports: listening }) }) });

  const client = new Sidecar(
    sidecarOptions('client', {
      upstreams: [{ service: 'echo.shop', listen: { host: LOOPBACK, port: 0 }, servicePort: 8080 }],
      httpProxy: { host: LOOPBACK, port: 0 },
    }),
  );
  const local = new Sidecar(sidecarOptions('local.shop', { httpProxy: { host: LOOPBACK, port: 0 } }));
  for (const [key, s] of [
    ['client', client],
    ['local.shop', local],
  ] as const) {
    sidecars.push(s);
    await giveIdentity(s, key);
    await s.start();
    const upstreams = key === 'client' ? [{ service: 'echo.shop', listen: s.addresses.upstreams['echo.shop:8080']!, servicePort: 8080 }] : [];
    s.apply({ version: 1, ...compileSnapshot({ config, instances, proxy: info(s, key, { httpProxy: s.addresses.httpProxy, upstreams }) }) });
    callers[key] = s;
  }
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const a of apps) await closeServer(a.server);
});

const call = (caller: string, host: string) => get(callers[caller]!.addresses.httpProxy!.port, '/', { host });

describe('a two-port service in a namespace, through sidecars', () => {
  it('reaches port 8080 as echo.shop:8080, where only the route bound to 8080 applies', async () => {
    for (const host of ['echo.shop:8080', 'echo.shop.svc:8080', 'echo.shop.svc.cluster.local:8080', 'ECHO.Shop.:8080']) {
      const r = await call('client', host);
      assert.equal(r.status, 200, host);
      assert.equal(r.body, 'shop/echo:http-alt', `${host}: port 8080's inbound listener and app port`);
      assert.equal(r.headers['x-route'], 'shop-alt-only', host);
    }
  });

  it('on port 80 the 8080-bound route does not apply; the consumer route bound to 80 does, for callers of its namespace', async () => {
    for (const host of ['echo.shop', 'echo.shop:80']) {
      const r = await call('client', host);
      assert.equal(r.status, 200, host);
      assert.equal(r.body, 'shop/echo:http', host);
      assert.equal(r.headers['x-route'], 'default-consumer-http', host);
    }
  });

  it('a caller in shop reaches the ports as echo and echo:8080, and gets no consumer route of default', async () => {
    const alt = await call('local.shop', 'echo:8080');
    assert.equal(alt.status, 200);
    assert.equal(alt.body, 'shop/echo:http-alt');
    assert.equal(alt.headers['x-route'], 'shop-alt-only');
    const http80 = await call('local.shop', 'echo');
    assert.equal(http80.status, 200);
    assert.equal(http80.body, 'shop/echo:http');
    assert.equal(http80.headers['x-route'], undefined, 'no producer route binds port 80, and the consumer route is default’s');
  });

  it("a bare name in default does not reach shop's echo", async () => {
    const r = await call('client', 'echo:8080');
    assert.equal(r.status, 503);
    assert.equal(r.headers['trellis-error'], 'unknown-service');
  });

  it('refuses a port echo.shop does not have', async () => {
    const r = await call('client', 'echo.shop:81');
    assert.equal(r.status, 503);
    assert.equal(r.headers['trellis-error'], 'unknown-port');
    const body = JSON.parse(r.body) as { code: string; message: string };
    assert.equal(body.code, 'TRELLIS_E_UNKNOWN_PORT');
    assert.match(body.message, /has no port 81 \(its ports: 80, 8080\)/);
  });

  it('a per-upstream listener { service: echo, namespace: shop, servicePort: 8080 } reaches port 8080', async () => {
    const r = await get(callers.client!.addresses.upstreams['echo.shop:8080']!.port, '/', { host: 'whatever' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'shop/echo:http-alt');
    assert.equal(r.headers['x-route'], 'shop-alt-only');
  });
});
