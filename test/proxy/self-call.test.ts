// A service may call itself through the mesh, as a pod calls its own Service on
// Kubernetes (the Gateway API mesh conformance suite's client is such an echo pod): the
// mesh file takes it as its own upstream, and its sidecar balances the calls over the
// service's instances, its own included. Snapshots come from the real compiler.
import { plainEndpoints } from '../helpers/test-identity.js';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, test } from 'node:test';
import type { ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { config, service } from '../control/helpers.js';
import { closeServer, get, listenHttp, NO_CONTROL, quietLog } from '../helpers/proxy-pair.js';

let a: { server: http.Server; port: number };
let b: { server: http.Server; port: number };
let s: Sidecar;

before(async () => {
  a = await listenHttp((_req, res) => res.end('echo-0'));
  b = await listenHttp((_req, res) => res.end('echo-1'));
  s = new Sidecar({
    service: 'echo',
    version: 'default',
    id: 'echo-0',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [{ service: 'echo', listen: { host: '127.0.0.1', port: 0 } }],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  await s.start();
  const info: ProxyInfo = {
    id: 'echo-0',
    service: 'echo',
    version: 'default',
    kind: 'sidecar',
    admin: s.addresses.admin!,
    upstreams: [{ service: 'echo', listen: s.addresses.upstreams.echo! }],
    pid: process.pid,
  };
  const mesh = config([service('echo', { upstreams: ['echo'] })]);
  const instances = [
    { id: 'echo-0', service: 'echo', version: 'default', inbound: { host: '127.0.0.1', port: a.port }, status: 'healthy' as const },
    { id: 'echo-1', service: 'echo', version: 'default', inbound: { host: '127.0.0.1', port: b.port }, status: 'healthy' as const },
  ];
  const snapshot = compileSnapshot({ config: plainEndpoints(mesh), instances, proxy: info });
  assert.ok(snapshot.upstreams.echo, 'the service is among its own upstreams');
  s.apply({ version: 1, ...snapshot });
});

after(async () => {
  await s.close();
  await closeServer(a.server);
  await closeServer(b.server);
});

test("a service's calls to itself go to its instances, its own included", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) {
    const r = await get(s.addresses.upstreams.echo!.port, '/', { host: 'echo' });
    assert.equal(r.status, 200);
    seen.add(r.body);
  }
  assert.deepEqual([...seen].sort(), ['echo-0', 'echo-1']);
});
