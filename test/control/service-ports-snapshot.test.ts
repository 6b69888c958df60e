// The compiler's per-port route tables for multi-port services: a route with
// parentRefs[].port lands in that port's table only, one without in every port's
// (the Gateway API's MeshPorts); each port's backends point at the instances' inbound
// listeners for that port; a one-port service compiles exactly as before.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProxyInfo, RouteEntry, ServicePortSnapshot } from '../../src/api/protocol.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { RouteConfig, TCPRouteConfig } from '../../src/control/sources/mesh-config.js';
import { config, route, service, sidecar } from './helpers.js';

const ECHO_PORTS = [
  { name: 'http', port: 80, protocol: 'http' as const },
  { name: 'http-alt', port: 8080, protocol: 'http' as const },
  { name: 'raw', port: 9090, protocol: 'tcp' as const },
];

const client: ProxyInfo = sidecar('client-0', 'client');

/** A route bound to `port` of `parent` (absent: every port). */
function bound(name: string, parent: string, port: number | undefined, header: string): RouteConfig {
  const r = route(name, parent, [
    {
      filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-header-set', value: header }] } }],
      backendRefs: [{ name: parent }],
    },
  ]);
  return { ...r.resource, spec: { ...r.resource.spec, parentRefs: [{ name: parent, ...(port === undefined ? {} : { port }) }] } };
}

const instances = [
  {
    id: 'echo-0',
    service: 'echo',
    version: 'default',
    inbound: { host: '127.0.0.1', port: 1080 },
    app: { host: '127.0.0.1', port: 2080 },
    ports: [
      { port: 80, inbound: { host: '127.0.0.1', port: 1080 }, app: { host: '127.0.0.1', port: 2080 } },
      { port: 8080, inbound: { host: '127.0.0.1', port: 1808 }, app: { host: '127.0.0.1', port: 2808 } },
      { port: 9090, inbound: { host: '127.0.0.1', port: 1909 }, app: { host: '127.0.0.1', port: 2909 } },
    ],
    status: 'healthy' as const,
  },
];

function compile(routes: RouteConfig[]) {
  const mesh = config(
    [service('echo', { ports: ECHO_PORTS }), service('client', { upstreams: ['echo'] })],
    routes.map((resource) => ({ file: 'routes.yaml', resource })),
  );
  return compileSnapshot({ config: mesh, instances, proxy: client });
}

const names = (routes: RouteEntry[]) => routes.map((r) => r.name);
const port = (ports: ServicePortSnapshot[] | undefined, n: number) => ports?.find((p) => p.port === n);

describe('multi-port services in snapshots', () => {
  it("sends a backendRef's share to the port it names (another port than the routed one gets its own backend), and marks a port the service lacks invalid", () => {
    const r = route('to-alt', 'echo', [
      {
        backendRefs: [
          { name: 'echo', port: 8080, weight: 1 },
          { name: 'echo', port: 81, weight: 1 },
          { name: 'echo', port: 80, weight: 1 },
        ],
      },
    ]);
    const withPort = { ...r.resource, spec: { ...r.resource.spec, parentRefs: [{ name: 'echo', port: 80 }] } };
    const p80 = port(compile([withPort]).upstreams.echo!.ports, 80)!;
    const [alt, missing, same] = p80.routes[0]!.backends;
    // Routed at port 80, a backendRef to port 8080 is backend `echo:8080`, at the instances' 8080 listener.
    assert.equal(alt!.backend, 'echo:8080');
    assert.deepEqual(
      p80.backends['echo:8080']!.endpoints.map((e) => e.port),
      [1808],
    );
    assert.equal(missing!.invalid?.reason, 'BackendNotFound');
    assert.match(missing!.invalid?.message ?? '', /has no port 81 \(ports: 80, 8080, 9090\)/);
    // Its own port: the port's usual backend.
    assert.equal(same!.backend, 'echo');
    assert.deepEqual(
      p80.backends.echo!.endpoints.map((e) => e.port),
      [1080],
    );
  });

  it('keeps a route table per port: a bound route in its port only, a portless one in every HTTP port', () => {
    const snap = compile([bound('only-80', 'echo', 80, 'v1'), bound('every', 'echo', undefined, 'all')]);
    const echo = snap.upstreams.echo!;
    assert.deepEqual(
      echo.ports?.map((p) => [p.port, p.name, p.protocol]),
      [
        [80, 'http', 'http'],
        [8080, 'http-alt', 'http'],
        [9090, 'raw', 'tcp'],
      ],
    );
    assert.deepEqual(names(port(echo.ports, 80)!.routes), ['default/only-80/rule/0', 'default/every/rule/0']);
    assert.deepEqual(names(port(echo.ports, 8080)!.routes), ['default/every/rule/0']);
    assert.deepEqual(port(echo.ports, 9090)!.routes, [], 'HTTPRoutes do not apply to a tcp port');
    // The top-level fields are the first port's: what a listener without a port choice reaches.
    assert.equal(echo.protocol, 'http');
    assert.deepEqual(echo.routes, port(echo.ports, 80)!.routes);
  });

  it("points each port's backends at the instances' inbound listener for that port", () => {
    const echo = compile([]).upstreams.echo!;
    const at = (n: number) => port(echo.ports, n)!.backends.echo!.endpoints.map((e) => [e.id, e.port, e.app?.port]);
    assert.deepEqual(at(80), [['echo-0', 1080, 2080]]);
    assert.deepEqual(at(8080), [['echo-0', 1808, 2808]]);
    assert.deepEqual(at(9090), [['echo-0', 1909, 2909]]);
    assert.deepEqual(port(echo.ports, 8080)!.backends['echo-default']!.endpoints[0]!.port, 1808, 'version backends too');
  });

  it('binds a TCPRoute to its tcp port', () => {
    const tcp: TCPRouteConfig = {
      kind: 'TCPRoute',
      metadata: { name: 'raw' },
      spec: { parentRefs: [{ name: 'echo', port: 9090 }], rules: [{ backendRefs: [{ name: 'echo' }] }] },
    };
    const echo = compile([tcp]).upstreams.echo!;
    assert.deepEqual(names(port(echo.ports, 9090)!.routes), ['default/raw/rule/0']);
    assert.deepEqual(port(echo.ports, 80)!.routes, []);
  });

  it("tells the service's own sidecar how each inbound port speaks", () => {
    const mesh = config([service('echo', { ports: ECHO_PORTS })]);
    const snap = compileSnapshot({ config: mesh, instances, proxy: sidecar('echo-0', 'echo') });
    assert.equal(snap.inboundProtocol, 'http');
    assert.deepEqual(snap.inboundPorts, [
      { port: 80, protocol: 'http' },
      { port: 8080, protocol: 'http' },
      { port: 9090, protocol: 'tcp' },
    ]);
  });

  it('compiles a one-port service as before: no ports, one route table', () => {
    const mesh = config([service('web'), service('client', { upstreams: ['web'] })], [{ file: 'r.yaml', resource: bound('w', 'web', undefined, 'x') }]);
    const snap = compileSnapshot({
      config: mesh,
      instances: [{ id: 'web-0', service: 'web', version: 'default', inbound: { host: '127.0.0.1', port: 1 }, status: 'healthy' }],
      proxy: client,
    });
    assert.equal(snap.upstreams.web!.ports, undefined);
    assert.equal(snap.inboundPorts, undefined);
    assert.deepEqual(names(snap.upstreams.web!.routes), ['default/w/rule/0']);
  });
});
