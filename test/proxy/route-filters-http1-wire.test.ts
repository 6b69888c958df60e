// Route filters on the HTTP/1.1 wire, byte for byte: a redirect answered on a pipelined
// connection leaves it usable for the next request, and a route without filters
// forwards the request head as received (names, case and order). (What the filters do,
// over HTTP/1.1 and HTTP/2 alike, is in behaviour/cases.ts.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import type { RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;

const prefix = (value: string): RouteEntry['match'] => ({ path: { type: 'PathPrefix', value } });

before(async () => {
  // The app answers with the raw header pairs it got.
  app = await listenHttp((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, raw: req.rawHeaders }));
  });
  inbound = await startInbound('api', 'v1', app.port);
  const snapshot: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [
      {
        name: 'redirect-prefix',
        match: prefix('/old'),
        filters: [{ type: 'RequestRedirect', statusCode: 301, path: { type: 'ReplacePrefixMatch', value: '/new' } }],
        backends: [{ backend: 'api', weight: 1 }],
      },
      { name: 'plain', match: prefix('/'), backends: [{ backend: 'api', weight: 1 }] },
    ],
    backends: { api: { name: 'api', endpoints: [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
  };
  outbound = await startOutbound('web', { api: snapshot });
  port = outbound.addresses.upstreams.api!.port;
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

test('a redirect keeps the client connection usable', async () => {
  const out = await rawExchange(port, 'GET /old HTTP/1.1\r\nHost: api\r\n\r\nGET /plain HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 301 Moved Permanently\r\nlocation: http:\/\/api\/new\r\n/);
  assert.match(out, /HTTP\/1\.1 200 OK/);
});

test('a route without filters forwards the head as received (names, case and order kept)', async () => {
  const out = await rawExchange(port, 'GET /plain?a=1 HTTP/1.1\r\nHost: api\r\nX-Mixed-Case: One\r\nx-second: two\r\nConnection: close\r\n\r\n');
  const body = out.slice(out.indexOf('\r\n\r\n') + 4);
  const s = JSON.parse(body) as { raw: string[] };
  assert.deepEqual(s.raw.slice(0, 4), ['Host', 'api', 'X-Mixed-Case', 'One']);
  assert.equal(s.raw[4], 'x-second');
});
