// Gateway API filters through a real sidecar pair (outbound → inbound → app):
// request and response header edits, redirects, URL rewrites, filters on one
// backendRef only, and the fast path left untouched for routes without filters.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let v1: { server: http.Server; port: number };
let v2: { server: http.Server; port: number };
let in1: Sidecar;
let in2: Sidecar;
let outbound: Sidecar;
let port: number;

/** What the app saw: its version, the method, the target, and the raw header pairs. */
interface Seen { version: string; method: string; url: string; raw: string[]; headers: http.IncomingHttpHeaders }

function app(version: string): Promise<{ server: http.Server; port: number }> {
  return listenHttp((req, res) => {
    const seen: Seen = { version, method: req.method!, url: req.url!, raw: req.rawHeaders, headers: req.headers };
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-app-version', version);
    res.setHeader('x-internal', 'secret');
    res.setHeader('x-multi', 'from-app');
    res.end(JSON.stringify(seen));
  });
}

const r = (name: string, match: RouteEntry['match'], filters: RouteEntry['filters'], backends: RouteEntry['backends'] = [{ backend: 'api-v1', weight: 1 }]): RouteEntry =>
  ({ name, match, ...(filters ? { filters } : {}), backends });
const prefix = (value: string): RouteEntry['match'] => ({ path: { type: 'PathPrefix', value } });

before(async () => {
  v1 = await app('v1');
  v2 = await app('v2');
  in1 = await startInbound('api', 'v1', v1.port);
  in2 = await startInbound('api', 'v2', v2.port);
  const e1 = { id: 'api-v1-0', host: '127.0.0.1', port: in1.addresses.inbound!.port, version: 'v1' };
  const e2 = { id: 'api-v2-0', host: '127.0.0.1', port: in2.addresses.inbound!.port, version: 'v2' };
  const snapshot: UpstreamSnapshot = {
    service: 'api', protocol: 'http',
    // Already in precedence order, as the control plane sends them.
    routes: [
      r('req-headers', prefix('/req-headers'), [{ type: 'RequestHeaderModifier', edits: { set: [{ name: 'x-set', value: 'new' }], add: [{ name: 'x-add', value: 'two' }], remove: ['x-remove'] } }]),
      r('res-headers', prefix('/res-headers'), [{ type: 'ResponseHeaderModifier', edits: { set: [{ name: 'x-multi', value: 'from-filter' }], add: [{ name: 'x-added', value: 'yes' }], remove: ['x-internal'] } }]),
      r('redirect-prefix', prefix('/old'), [{ type: 'RequestRedirect', statusCode: 301, path: { type: 'ReplacePrefixMatch', value: '/new' } }]),
      r('redirect-https', prefix('/secure'), [{ type: 'RequestRedirect', statusCode: 302, scheme: 'https', hostname: 'shop.example.com' }]),
      r('redirect-port', prefix('/moved'), [{ type: 'RequestRedirect', statusCode: 302, port: 8443, path: { type: 'ReplaceFullPath', value: '/elsewhere' } }], []),
      r('rewrite', prefix('/v1/api'), [{ type: 'URLRewrite', hostname: 'internal.example', path: { type: 'ReplacePrefixMatch', value: '/api' } }]),
      r('rewrite-full', { path: { type: 'Exact', value: '/full' } }, [{ type: 'URLRewrite', path: { type: 'ReplaceFullPath', value: '/replaced' } }]),
      r('per-backend', prefix('/per-backend'), undefined, [
        { backend: 'api-v1', weight: 1 },
        { backend: 'api-v2', weight: 1, filters: [{ type: 'RequestHeaderModifier', edits: { add: [{ name: 'x-backend', value: 'v2' }] } }, { type: 'ResponseHeaderModifier', edits: { add: [{ name: 'x-via', value: 'v2-filter' }] } }] },
      ]),
      r('plain', prefix('/'), undefined),
    ],
    backends: {
      api: { name: 'api', endpoints: [e1, e2] },
      'api-v1': { name: 'api-v1', endpoints: [e1] },
      'api-v2': { name: 'api-v2', endpoints: [e2] },
    },
  };
  outbound = await startOutbound('web', { api: snapshot });
  port = outbound.addresses.upstreams.api!.port;
});

after(async () => {
  await outbound.close();
  await in1.close();
  await in2.close();
  await closeServer(v1.server);
  await closeServer(v2.server);
});

const seen = (body: string): Seen => JSON.parse(body) as Seen;

test('RequestHeaderModifier sets, adds and removes request headers', async () => {
  const res = await get(port, '/req-headers/x?q=1', { 'x-set': 'old', 'x-add': 'one', 'x-remove': 'gone', 'x-keep': 'kept' });
  assert.equal(res.status, 200);
  const s = seen(res.body);
  assert.equal(s.url, '/req-headers/x?q=1');
  assert.equal(s.headers['x-set'], 'new', 'set overwrites');
  assert.equal(s.headers['x-add'], 'one, two', 'add keeps the value sent and adds one');
  assert.equal(s.headers['x-remove'], undefined);
  assert.equal(s.headers['x-keep'], 'kept');
  assert.equal(s.headers['trellis-source'], 'web', "the sidecar's own header still goes along");
});

test('ResponseHeaderModifier edits the response head the client gets', async () => {
  const res = await get(port, '/res-headers');
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-multi'], 'from-filter');
  assert.equal(res.headers['x-added'], 'yes');
  assert.equal(res.headers['x-internal'], undefined);
  assert.equal(res.headers['x-app-version'], 'v1');
  assert.equal(seen(res.body).version, 'v1', 'the body is untouched');
  // Keep-alive still works after an edited head (the framing was kept).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await get(port, '/res-headers', {}, agent)).headers['x-added'], 'yes');
  } finally {
    agent.destroy();
  }
});

test('RequestRedirect answers with the status and Location, keeping the query string; nothing reaches a backend', async () => {
  const prefixRes = await get(port, '/old/items/7?page=2', { host: 'api:9000' });
  assert.equal(prefixRes.status, 301);
  assert.equal(prefixRes.headers.location, 'http://api:9000/new/items/7?page=2', 'the port the request came to stays');
  const https = await get(port, '/secure/login', { host: 'api' });
  assert.equal(https.status, 302);
  assert.equal(https.headers.location, 'https://shop.example.com/secure/login', 'port 443 is left out for https');
  const moved = await get(port, '/moved/a?b=c', { host: 'api' });
  assert.equal(moved.status, 302);
  assert.equal(moved.headers.location, 'http://api:8443/elsewhere?b=c');
  assert.equal(moved.headers['content-length'], '0');
});

test('a redirect keeps the client connection usable', async () => {
  const out = await rawExchange(port, 'GET /old HTTP/1.1\r\nHost: api\r\n\r\nGET /plain HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 301 Moved Permanently\r\nlocation: http:\/\/api\/new\r\n/);
  assert.match(out, /HTTP\/1\.1 200 OK/);
});

test('URLRewrite changes the Host header and path the backend sees, not what the client sent', async () => {
  const s = seen((await get(port, '/v1/api/items?x=1', { host: 'api' })).body);
  assert.equal(s.url, '/api/items?x=1');
  assert.equal(s.headers.host, 'internal.example');
  assert.equal(seen((await get(port, '/full?k=v')).body).url, '/replaced?k=v');
});

test('backendRef filters apply only to requests sent to that backend', async () => {
  const counts = { v1: 0, v2: 0 };
  for (let i = 0; i < 40; i++) {
    const res = await get(port, '/per-backend');
    const s = seen(res.body);
    counts[s.version as 'v1' | 'v2']++;
    if (s.version === 'v2') {
      assert.equal(s.headers['x-backend'], 'v2');
      assert.equal(res.headers['x-via'], 'v2-filter');
    } else {
      assert.equal(s.headers['x-backend'], undefined);
      assert.equal(res.headers['x-via'], undefined);
    }
  }
  assert.ok(counts.v1 > 0 && counts.v2 > 0, `both backends used: ${JSON.stringify(counts)}`);
});

test('a route without filters forwards the head as received (names, case and order kept)', async () => {
  const out = await rawExchange(port, 'GET /plain?a=1 HTTP/1.1\r\nHost: api\r\nX-Mixed-Case: One\r\nx-second: two\r\nConnection: close\r\n\r\n');
  const body = out.slice(out.indexOf('\r\n\r\n') + 4);
  const s = seen(body);
  assert.deepEqual(s.raw.slice(0, 4), ['Host', 'api', 'X-Mixed-Case', 'One']);
  assert.equal(s.raw[4], 'x-second');
});
