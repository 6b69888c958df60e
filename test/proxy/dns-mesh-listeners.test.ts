// A sidecar with a DNS responder (`--dns-listen`): a mesh service's name resolves to its
// loopback address (stable, one per service), the first query opens the service's
// outbound listeners there on its ports, and a plain HTTP request to that address goes
// through the mesh, mutual TLS on (the backend's inbound listener is STRICT), to the
// backend. ExternalServices' names and unknown names are not the mesh's (forwarded); a
// port the app itself listens on is never taken.
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import type http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import { LoopbackAddresses } from '../../src/proxy/dns/loopback-addresses.js';
import { meshNames, meshPorts } from '../../src/proxy/dns/mesh-names.js';
import { nameservers } from '../../src/proxy/dns/resolv-conf.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { dnsLimits } from '../../src/cli/proxy.js';
import { closeServer, listenHttp, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';
import { giveIdentity, withPeerMtls } from '../helpers/test-identity.js';
import { eventually } from '../helpers/eventually.js';

function upstream(service: string, inboundPort: number, appPort: number, ports?: number[]): UpstreamSnapshot {
  const eps = [{ id: `${service}-0`, host: '127.0.0.1', port: inboundPort, version: 'v1', app: { host: '127.0.0.1', port: appPort } }];
  const backends = { [service]: { name: service, endpoints: eps } };
  return {
    service,
    protocol: 'http',
    routes: [],
    backends,
    ...(ports !== undefined ? { ports: ports.map((port) => ({ port, protocol: 'http' as const, routes: [], backends })) } : {}),
  };
}

function get(host: string, port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let out = '';
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('end', () => {
      const [head = '', body = ''] = out.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), body });
    });
    s.on('error', reject);
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
}

describe('a sidecar answering DNS for its mesh', () => {
  let app: { server: http.Server; port: number };
  let backend: Sidecar;
  let web: Sidecar;
  let resolver: Resolver;
  /** A port the web app itself listens on, which a multi-port service also has. */
  const webAppPort = 18_000 + Math.floor(Math.random() * 1000);

  before(async () => {
    app = await listenHttp((req, res) => res.end(`backend saw ${req.url} from ${req.headers['trellis-source'] ?? 'unknown'}`));
    backend = await startInbound('backend', 'v1', app.port, 'http', { mtls: 'STRICT' });
    web = new Sidecar({
      service: 'web',
      version: 'default',
      id: 'web-0',
      kind: 'sidecar',
      control: NO_CONTROL,
      app: { host: '127.0.0.1', port: webAppPort },
      inbound: { host: '127.0.0.1', port: 0 },
      upstreams: [],
      admin: { host: '127.0.0.1', port: 0 },
      accessLog: 'off',
      log: quietLog,
      dns: { listen: { host: '127.0.0.1', port: 0 }, upstreams: [] },
    });
    await giveIdentity(web, 'web');
    await web.start();
    const inbound = backend.addresses.inbound!.port;
    web.apply({
      version: 1,
      service: 'web',
      inboundProtocol: 'http',
      meshServices: ['backend', 'web'],
      upstreams: withPeerMtls({
        backend: upstream('backend', inbound, app.port),
        'multi.ns-b': upstream('multi.ns-b', inbound, app.port, [app.port, webAppPort]),
        'api-example': { ...upstream('api-example', inbound, app.port), externalHosts: ['api.example.com'] },
      }),
    });
    resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${web.addresses.dns!.port}`]);
  });

  after(async () => {
    await web?.close();
    await backend?.close();
    if (app) await closeServer(app.server);
  });

  test('a mesh name resolves to a loopback address where a plain request reaches the backend over mutual TLS', async () => {
    const [address] = await resolver.resolve4('backend');
    assert.match(address ?? '', /^127\.255\.\d+\.\d+$/);
    assert.deepEqual(await resolver.resolve4('backend.default.svc.cluster.local'), [address], 'every Kubernetes form of the name');
    const r = await get(address as string, app.port, '/hello');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'backend saw /hello from web', 'through both sidecars: the inbound one (STRICT) named the caller from its certificate');
    assert.ok((await web.metrics.text()).includes('trellis_tls_connections_total'), 'mutual TLS was used');
  });

  test("another namespace's service by its qualified names, never by the bare one; the app's own port is not taken", async () => {
    const [address] = await resolver.resolve4('multi.ns-b.svc');
    assert.match(address ?? '', /^127\.255\./);
    await assert.rejects(resolver.resolve4('multi'), { code: 'ESERVFAIL' }, 'not the mesh: forwarded (here, to no resolver)');
    assert.equal((await get(address as string, app.port)).status, 200);
    await assert.rejects(get(address as string, webAppPort), { code: 'ECONNREFUSED' }, "the web app's own port stays free for it");
  });

  test("a port the service gains later (a new instance's app port) is opened at the same address", async () => {
    const [address] = await resolver.resolve4('backend');
    const second = await listenHttp((req, res) => res.end(`second saw ${req.url}`));
    try {
      await assert.rejects(get(address as string, second.port), { code: 'ECONNREFUSED' }, 'not a port of the service yet');
      const inbound = backend.addresses.inbound!.port;
      const u = upstream('backend', inbound, app.port);
      const endpoints = [
        ...(u.backends.backend?.endpoints ?? []),
        { id: 'backend-1', host: '127.0.0.1', port: inbound, version: 'v1', app: { host: '127.0.0.1', port: second.port } },
      ];
      web.apply({
        version: 2,
        service: 'web',
        inboundProtocol: 'http',
        meshServices: ['backend', 'web'],
        upstreams: withPeerMtls({ backend: { ...u, backends: { backend: { name: 'backend', endpoints } } } }),
      });
      const r = await eventually(() => get(address as string, second.port));
      assert.equal(r.status, 200, 'the listener on the new port is the mesh: the request goes to the backend through its sidecar');
      assert.deepEqual(await resolver.resolve4('backend'), [address], 'the same address');
    } finally {
      await closeServer(second.server);
    }
  });

  test("an ExternalService's host is not answered by the mesh", async () => {
    await assert.rejects(resolver.resolve4('api.example.com'), { code: 'ESERVFAIL' });
    await assert.rejects(resolver.resolve4('api-example'), { code: 'ESERVFAIL' });
  });
});

test('loopback addresses are stable per service, distinct, and bounded', () => {
  const a = new LoopbackAddresses(3);
  const b = new LoopbackAddresses(3);
  const x = a.addressOf('backend');
  assert.equal(a.addressOf('backend'), x);
  assert.equal(b.addressOf('backend'), x, 'the same in another process (a restarted sidecar)');
  const y = a.addressOf('postgres');
  assert.notEqual(x, y);
  assert.ok(a.addressOf('redis'));
  assert.equal(a.addressOf('one-too-many'), undefined);
  for (const addr of [x, y]) assert.match(addr ?? '', /^127\.255\.\d{1,3}\.([1-9]|[1-9]\d|1\d\d|2[0-4]\d|25[0-4])$/);
  // Colliding hashes probe on: a thousand services, a thousand addresses.
  const many = new LoopbackAddresses(1000);
  assert.equal(new Set(Array.from({ length: 1000 }, (_, i) => many.addressOf(`svc-${i}`))).size, 1000);
});

test('mesh names and ports come from the snapshot', () => {
  const u = upstream('backend', 15006, 8080);
  const names = meshNames({
    version: 1,
    service: 'web',
    namespace: 'shop',
    clusterDomain: 'corp.local',
    inboundProtocol: 'http',
    upstreams: { 'backend.shop': u, 'db.data': u, ext: { ...u, externalHosts: ['x.example.com'] } },
  });
  assert.deepEqual([...names.keys()].sort(), [
    'backend',
    'backend.shop',
    'backend.shop.svc',
    'backend.shop.svc.corp.local',
    'db.data',
    'db.data.svc',
    'db.data.svc.corp.local',
  ]);
  assert.deepEqual(meshPorts(u), [80, 8080], 'a one-port service: 80 and its apps ports');
  assert.deepEqual(meshPorts(upstream('m', 1, 2, [5432, 5433])), [5432, 5433]);
});

test('--dns-limit takes the named limits, and refuses unknown names and bad numbers', () => {
  assert.deepEqual(dnsLimits(['maxInFlight=64', 'forwardTimeoutMs=1500', 'maxServices=10']), {
    limits: { maxInFlight: 64, forwardTimeoutMs: 1500 },
    maxServices: 10,
  });
  assert.deepEqual(dnsLimits([]), { limits: {} });
  for (const bad of ['maxInFlight', 'nope=1', 'maxInFlight=0', 'maxInFlight=-1', 'maxInFlight=1e3', '__proto__=1', 'toString=1'])
    assert.throws(() => dnsLimits([bad]), { code: 'TRELLIS_E_USAGE' }, bad);
});

test('resolv.conf name servers', () => {
  assert.deepEqual(
    nameservers('search default.svc.cluster.local\nnameserver 10.96.0.10\n# nameserver 1.1.1.1\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:5\n'),
    [
      { host: '10.96.0.10', port: 53 },
      { host: '::1', port: 53 },
    ],
  );
  assert.deepEqual(nameservers('nameserver 1.1.1.1\nnameserver 1.1.1.2\nnameserver 1.1.1.3\nnameserver 1.1.1.4').length, 3);
});
