// An absolute-form request target names its host (RFC 9112 §3.2.2): that authority is
// the request's host on every listener (per-upstream, HTTP proxy, inbound), and a Host
// header that names another one is refused (400), so routing and the app never read
// two different hosts. The same holds for HTTP/2's :authority against a host header.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request } from '../helpers/h2.js';
import { closeServer, listenHttp, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
/** What the app saw of each request: `host url`. */
const seen: string[] = [];

before(async () => {
  app = await listenHttp((req, res) => {
    seen.push(`${req.headers.host ?? '(none)'} ${req.url}`);
    res.end(`host=${req.headers.host ?? '(none)'} url=${req.url}`);
  });
  inbound = await startInbound('api', 'v1', app.port);
  const endpoints = [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
  outbound = await startOutbound(
    'web',
    {
      api: { service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints } } },
      other: { service: 'other', protocol: 'http', routes: [], backends: { other: { name: 'other', endpoints } } },
    },
    { httpProxy: true },
  );
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

const send = (port: number, head: string): Promise<string> => rawExchange(port, `${head}\r\nConnection: close\r\n\r\n`, 2000);

test('an absolute-form target naming another host than Host is refused on every listener', async () => {
  seen.length = 0;
  const listeners = {
    upstream: outbound.addresses.upstreams.api!.port,
    httpProxy: outbound.addresses.httpProxy!.port,
    inbound: inbound.addresses.inbound!.port,
  };
  for (const [name, port] of Object.entries(listeners)) {
    for (const head of ['GET http://other-host/x HTTP/1.1\r\nHost: api', 'GET http://api/x HTTP/1.1\r\nHost: other']) {
      const out = await send(port, head);
      assert.match(out, /^HTTP\/1\.1 400 /, `${name}: ${JSON.stringify(head)} → ${out}`);
      assert.match(out, /trellis-error: bad-request/);
    }
  }
  assert.deepEqual(seen, [], 'nothing reached the app');
});

test('the HTTP proxy listener routes an absolute-form request by its authority, which the app sees as Host', async () => {
  const out = await send(outbound.addresses.httpProxy!.port, 'GET http://api/x?q=1 HTTP/1.1\r\nHost: api');
  assert.match(out, /^HTTP\/1\.1 200 /, out);
  assert.match(out, /host=api url=\/x\?q=1$/);
  const other = await send(outbound.addresses.httpProxy!.port, 'GET http://OTHER:80/y HTTP/1.1\r\nHost: other');
  assert.match(other, /^HTTP\/1\.1 200 /, other);
  assert.match(other, /host=other url=\/y$/, 'the default port and letter case make no difference');
});

test('an HTTP/1.0 absolute-form request without Host reaches the app with the authority as Host', async () => {
  const out = await send(outbound.addresses.upstreams.api!.port, 'GET http://api/z HTTP/1.0');
  assert.match(out, /^HTTP\/1\.1 200 /, out);
  assert.match(out, /host=api url=\/z$/);
});

test('an absolute-form target with userinfo or an empty host is refused', async () => {
  for (const head of ['GET http://user@api/x HTTP/1.1\r\nHost: api', 'GET http:///x HTTP/1.1\r\nHost: api']) {
    const out = await send(outbound.addresses.upstreams.api!.port, head);
    assert.match(out, /^HTTP\/1\.1 400 /, `${JSON.stringify(head)} → ${out}`);
  }
});

test('an HTTP/2 request whose host header names another authority than :authority is refused', async () => {
  const session = http2.connect(`http://127.0.0.1:${outbound.addresses.upstreams.api!.port}`);
  session.on('error', () => {});
  try {
    const r = await h2Request(session, { ':path': '/x', ':authority': 'other-host', host: 'api' });
    assert.equal(r.status, 400);
    assert.equal(r.headers['trellis-error'], 'bad-request');
  } finally {
    session.close();
  }
});
