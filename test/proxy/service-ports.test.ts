// Multi-port services through real sidecars (the Gateway API's MeshPorts): each service
// port has its own inbound listener in front of its own app port; a caller picks the port
// with `Host: svc:PORT` (no port = 80) or with a per-upstream listener naming it; a route
// bound to port 80 (parentRefs[].port) applies there only, a route without a port to every
// port; a port the service does not have is refused with unknown-port. Snapshots come from
// the real compiler, as the control plane would send them.
import { giveIdentity } from '../helpers/test-identity.js';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { InstancePort, ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import type { ControlConfig, HTTPRouteConfig } from '../../src/control/sources/mesh-config.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { config, service } from '../control/helpers.js';
import { closeServer, get, listenHttp, NO_CONTROL, quietLog } from '../helpers/proxy-pair.js';

const LOOPBACK = '127.0.0.1';
const PORTS = [
  { name: 'http', port: 80, protocol: 'http' as const },
  { name: 'http-alt', port: 8080, protocol: 'http' as const },
];

const apps: { server: http.Server; port: number }[] = [];
const sidecars: Sidecar[] = [];
let caller: Sidecar;

/** A route on `parent` (bound to `port` when given) that sets x-header-set on responses. */
function headerRoute(name: string, parent: string, port: number | undefined, value: string): ControlConfig['routes'][number] {
  const resource: HTTPRouteConfig = {
    metadata: { name },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: parent, ...(port === undefined ? {} : { port }) }],
      rules: [
        {
          filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Header-Set', value }] } }],
          backendRefs: [{ name: parent, port: 80 }],
        },
      ],
    },
  };
  return { file: 'mesh-ports.yaml', resource };
}

const mesh = config(
  [
    service('echo-v1', { ports: PORTS }),
    service('echo-v2', { ports: PORTS }),
    {
      ...service('client'),
      upstreams: [{ service: 'echo-v1' }, { service: 'echo-v1', servicePort: 8080 }, { service: 'echo-v2' }],
    },
  ],
  // As the conformance suite's mesh-ports.yaml: echo-v1's route binds to port 80, echo-v2's to every port.
  [headerRoute('mesh-split-v1', 'echo-v1', 80, 'v1'), headerRoute('mesh-split-v2', 'echo-v2', undefined, 'v2')],
);

function info(s: Sidecar, id: string, serviceName: string, extra: Partial<ProxyInfo> = {}): ProxyInfo {
  return { id, service: serviceName, version: 'default', kind: 'sidecar', admin: s.addresses.admin!, upstreams: [], pid: process.pid, ...extra };
}

const instances: RoutableInstance[] = [];

before(async () => {
  // Each echo instance: an app port per service port, answering which one it is.
  for (const name of ['echo-v1', 'echo-v2']) {
    const ports: InstancePort[] = [];
    for (const p of PORTS) {
      const app = await listenHttp((_req, res) => res.end(`${name}:${p.name}`));
      apps.push(app);
      ports.push({ port: p.port, app: { host: LOOPBACK, port: app.port }, inbound: { host: LOOPBACK, port: 0 } });
    }
    const s = new Sidecar({
      service: name,
      version: 'default',
      id: `${name}-0`,
      kind: 'sidecar',
      control: NO_CONTROL,
      ports,
      upstreams: [],
      admin: { host: LOOPBACK, port: 0 },
      accessLog: 'off',
      log: quietLog,
    });
    sidecars.push(s);
    await giveIdentity(s, name);
    await s.start();
    const listening = s.addresses.ports!;
    assert.equal(listening.length, 2, 'an inbound listener per service port');
    instances.push({
      id: `${name}-0`,
      service: name,
      version: 'default',
      inbound: listening[0]!.inbound,
      app: listening[0]!.app,
      ports: listening,
      status: 'healthy',
    });
  }
  caller = new Sidecar({
    service: 'client',
    version: 'default',
    id: 'client-0',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [
      { service: 'echo-v1', listen: { host: LOOPBACK, port: 0 } },
      { service: 'echo-v1', listen: { host: LOOPBACK, port: 0 }, servicePort: 8080 },
    ],
    httpProxy: { host: LOOPBACK, port: 0 },
    admin: { host: LOOPBACK, port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  sidecars.push(caller);
  await giveIdentity(caller, 'client');
  await caller.start();
  const callerInfo = info(caller, 'client-0', 'client', {
    httpProxy: caller.addresses.httpProxy,
    upstreams: [
      { service: 'echo-v1', listen: caller.addresses.upstreams['echo-v1']! },
      { service: 'echo-v1', listen: caller.addresses.upstreams['echo-v1:8080']!, servicePort: 8080 },
    ],
  });
  caller.apply({ version: 1, ...compileSnapshot({ config: mesh, instances, proxy: callerInfo }) });
  for (const [i, name] of ['echo-v1', 'echo-v2'].entries()) {
    const s = sidecars[i]!;
    s.apply({ version: 1, ...compileSnapshot({ config: mesh, instances, proxy: info(s, `${name}-0`, name, { ports: s.addresses.ports }) }) });
  }
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const a of apps) await closeServer(a.server);
});

const viaProxy = (host: string) => get(caller.addresses.httpProxy!.port, '/', { host });

describe('MeshPorts through real sidecars', () => {
  it('explicit port set (parentRefs[].port: 80), sent to that port: the route applies', async () => {
    const r = await viaProxy('echo-v1');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'echo-v1:http', 'no port in Host is port 80, the app port behind it');
    assert.equal(r.headers['x-header-set'], 'v1');
    const explicit = await viaProxy('echo-v1:80');
    assert.equal(explicit.headers['x-header-set'], 'v1');
  });

  it('explicit port set, sent to another port: the route does not apply', async () => {
    const r = await viaProxy('echo-v1:8080');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'echo-v1:http-alt', "port 8080's own inbound listener and app port");
    assert.equal(r.headers['x-header-set'], undefined);
  });

  it('no port set: the route applies to every port', async () => {
    for (const [host, body] of [
      ['echo-v2', 'echo-v2:http'],
      // The route's backendRef names port 80 (as upstream's mesh-ports.yaml does), so what
      // it takes at port 8080 goes to echo-v2's port 80, as a Kubernetes backendRef port would.
      ['echo-v2:8080', 'echo-v2:http'],
    ] as const) {
      const r = await viaProxy(host);
      assert.equal(r.status, 200, host);
      assert.equal(r.body, body, host);
      assert.equal(r.headers['x-header-set'], 'v2', host);
    }
  });

  it('refuses a port the service does not have, saying which it has', async () => {
    for (const [host, port] of [
      ['echo-v1:81', '81'],
      ['echo-v1:0', '(not a port number)'],
    ] as const) {
      const r = await viaProxy(host);
      assert.equal(r.status, 503, host);
      assert.equal(r.headers['trellis-error'], 'unknown-port', host);
      const body = JSON.parse(r.body) as { code: string; message: string };
      assert.equal(body.code, 'TRELLIS_E_UNKNOWN_PORT');
      assert.equal(body.message, `service "echo-v1" has no port ${port} (its ports: 80, 8080); address one of them as Host: echo-v1:PORT (no port means 80)`);
    }
  });

  it('a per-upstream listener reaches the port it names, or the first port', async () => {
    const alt = await get(caller.addresses.upstreams['echo-v1:8080']!.port, '/', { host: 'whatever' });
    assert.equal(alt.body, 'echo-v1:http-alt');
    assert.equal(alt.headers['x-header-set'], undefined);
    const first = await get(caller.addresses.upstreams['echo-v1']!.port, '/', { host: 'whatever:8080' });
    assert.equal(first.body, 'echo-v1:http', 'a listener without a port reaches the first port, whatever the Host says');
    assert.equal(first.headers['x-header-set'], 'v1');
  });

  it("a request to one port's app address reaches that port of that instance", async () => {
    const app = sidecars[0]!.addresses.ports![1]!.app;
    const r = await viaProxy(`${app.host}:${app.port}`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'echo-v1:http-alt');
  });

  it('tells the control plane every port in its hello', () => {
    const ports = sidecars[0]!.addresses.ports!;
    assert.deepEqual(
      ports.map((p) => p.port),
      [80, 8080],
    );
    assert.ok(ports.every((p) => p.inbound.port > 0 && p.app.port > 0));
  });
});
