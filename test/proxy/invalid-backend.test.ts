// A backendRef to a Service that does not exist is invalid on its own (Gateway API
// HTTPBackendRef): the route still works, the requests its weight would take are
// answered 500 invalid-backend, and a weight of 0 is simply never chosen. Snapshots come
// from the real compiler; requests go through an outbound sidecar and an inbound one,
// over HTTP/1.1 and HTTP/2.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { ProxyInfo, UpstreamSnapshot } from '../../src/api/protocol.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { config, route, service, sidecar } from '../control/helpers.js';
import { openClient, WIRE_PROTOCOLS } from '../helpers/client.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const prefix = (value: string) => [{ path: { type: 'PathPrefix' as const, value } }];

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
let echo: UpstreamSnapshot;

before(async () => {
  app = await listenHttp((_req, res) => res.end('echo'));
  inbound = await startInbound('echo', 'default', app.port);
  const mesh = config(
    [service('web', { upstreams: ['echo'] }), service('echo')],
    [
      route('echo-routes', 'echo', [
        {
          matches: prefix('/split'),
          backendRefs: [
            { name: 'echo', weight: 1 },
            { name: 'missing', weight: 1 },
          ],
        },
        {
          matches: prefix('/zero'),
          backendRefs: [
            { name: 'echo', weight: 1 },
            { name: 'missing', weight: 0 },
          ],
        },
        { matches: prefix('/only'), backendRefs: [{ name: 'missing' }] },
      ]),
    ],
  );
  const instances = [{ id: 'echo-0', service: 'echo', version: 'default', inbound: inbound.addresses.inbound!, status: 'healthy' as const }];
  const web: ProxyInfo = sidecar('web-0', 'web', 'default', { upstreams: [{ service: 'echo', listen: { host: '127.0.0.1', port: 0 } }] });
  const upstream = compileSnapshot({ config: mesh, instances, proxy: web }).upstreams.echo;
  assert.ok(upstream, 'echo is an upstream of web');
  echo = upstream;
  outbound = await startOutbound('web', { echo });
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
});

test('the compiler keeps an invalid backendRef in its rule, weight and all, marked with its reason, and out of the backends', () => {
  const split = echo.routes.find((r) => r.match.path?.value === '/split');
  assert.deepEqual(
    split?.backends.map((b) => [b.backend, b.weight, b.invalid?.reason]),
    [
      ['echo', 1, undefined],
      ['missing', 1, 'BackendNotFound'],
    ],
  );
  assert.match(split?.backends[1]?.invalid?.message ?? '', /^no Service "missing" in the mesh/);
  assert.deepEqual(Object.keys(echo.backends), ['echo', 'echo-default']);
});

for (const protocol of WIRE_PROTOCOLS) {
  describe(`over ${protocol}`, () => {
    const client = () => openClient(protocol, outbound.addresses.upstreams.echo!.port);

    test("the valid backend keeps its share, and the invalid one's share is answered 500 invalid-backend", async () => {
      const c = client();
      try {
        const seen = new Map<string, number>();
        for (let i = 0; i < 60; i++) {
          const r = await c.request('GET', `/split/${i}`, { host: 'echo' });
          const key = `${r.status} ${r.error}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          if (r.status === 500) assert.match(r.body, /backendRef \\?"missing\\?", which is invalid \(BackendNotFound\)/);
        }
        assert.deepEqual([...seen.keys()].sort(), ['200 ', '500 invalid-backend']);
        // Each share is a coin toss: 60 tosses land at least 10 on each side but for a 1-in-10^6 run.
        assert.ok((seen.get('200 ') ?? 0) >= 10 && (seen.get('500 invalid-backend') ?? 0) >= 10, JSON.stringify([...seen]));
      } finally {
        await c.close();
      }
    });

    test('an invalid backendRef of weight 0 is never chosen', async () => {
      const c = client();
      try {
        for (let i = 0; i < 20; i++) {
          const r = await c.request('GET', `/zero/${i}`, { host: 'echo' });
          assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'echo' });
        }
      } finally {
        await c.close();
      }
    });

    test("a rule whose only backendRef is invalid answers all its requests 500; the route's other rules work", async () => {
      const c = client();
      try {
        const only = await c.request('GET', '/only', { host: 'echo' });
        assert.deepEqual({ status: only.status, error: only.error }, { status: 500, error: 'invalid-backend' });
        assert.equal((await c.request('GET', '/zero', { host: 'echo' })).status, 200);
      } finally {
        await c.close();
      }
    });
  });
}
