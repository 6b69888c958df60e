// HTTP/2 with prior knowledge (h2c) through a sidecar pair: a connection that opens
// with the HTTP/2 preface is served as HTTP/2 on the same ports as HTTP/1.1, each
// stream is routed like an HTTP/1.1 request, and goes on as HTTP/2 to the next hop
// and to the app, bodies and trailers included.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request, listenH1AndH2 } from '../helpers/h2.js';
import { get, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: net.Server;
let appH1: http.Server;
let _appH2: http2.Http2Server;
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;

before(async () => {
  // The app answers HTTP/2 and HTTP/1.1 alike on one port (node's h2c server can't), echoing what it received.
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      res.setHeader('content-type', 'application/json');
      if (req.httpVersion === '2.0') res.addTrailers({ 'x-checksum': String(body.length) });
      res.end(
        JSON.stringify({
          version: req.httpVersion,
          method: req.method,
          path: req.url,
          body,
          source: req.headers['trellis-source'] ?? null,
          custom: req.headers['x-custom'] ?? null,
          trailer: req.trailers['x-req-trailer'] ?? null,
        }),
      );
    });
  };
  const a = await listenH1AndH2(handler);
  ({ server: app, h1: appH1 } = a);
  const appPort = a.port;
  inbound = await startInbound('echo', 'v1', appPort);
  const backends = { echo: { name: 'echo', endpoints: [{ id: 'echo-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } };
  outbound = await startOutbound('web', {
    echo: { service: 'echo', protocol: 'http', routes: [], backends },
  });
  port = outbound.addresses.upstreams.echo!.port;
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  appH1.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
});

test('an h2c request with a body reaches the app as HTTP/2, and the response and its trailers come back', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const res = await h2Request(session, { ':method': 'POST', ':path': '/things?x=1', 'x-custom': 'yes' }, 'hello over h2', { 'x-req-trailer': 'sent-last' });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), {
      version: '2.0',
      method: 'POST',
      path: '/things?x=1',
      body: 'hello over h2',
      source: 'web',
      custom: 'yes',
      trailer: 'sent-last',
    });
    assert.equal(res.trailers['x-checksum'], String('hello over h2'.length));
  } finally {
    session.close();
  }
});

test('many streams share one client connection, each answered in full', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => h2Request(session, { ':method': 'POST', ':path': `/n/${i}` }, 'x'.repeat(i * 1000))),
    );
    results.forEach((r, i) => {
      const body = JSON.parse(r.body) as { path: string; body: string };
      assert.equal(body.path, `/n/${i}`);
      assert.equal(body.body.length, i * 1000);
    });
  } finally {
    session.close();
  }
});

test('a large body streams through both ways', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const big = 'abcdefgh'.repeat(512 * 1024); // 4 MiB, more than every flow-control window on the way
    const res = await h2Request(session, { ':method': 'POST', ':path': '/big' }, big);
    assert.equal((JSON.parse(res.body) as { body: string }).body.length, big.length);
  } finally {
    session.close();
  }
});

test('HTTP/1.1 on the same port still works, before and after HTTP/2 connections', async () => {
  const res = await get(port, '/plain');
  assert.equal(res.status, 200);
  assert.equal((JSON.parse(res.body) as { version: string }).version, '1.1');
});

test('an h2 request for an unknown service gets the proxy error as an HTTP/2 response with trellis-error', async () => {
  // The HTTP proxy listener: the service comes from :authority, which names no upstream.
  const proxy = await startOutbound('web', {}, { httpProxy: true });
  const s2 = http2.connect(`http://127.0.0.1:${proxy.addresses.httpProxy!.port}`);
  try {
    const res = await h2Request(s2, { ':method': 'GET', ':path': '/', ':authority': 'nowhere:80' });
    assert.equal(res.status, 503);
    assert.equal(res.headers['trellis-error'], 'unknown-service');
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'TRELLIS_E_UNKNOWN_SERVICE');
  } finally {
    s2.close();
    await proxy.close();
  }
});

test('an app that closes its connection (GOAWAY) after every stream: the next requests open a fresh session', async () => {
  const closing = http2.createServer();
  closing.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('bye');
    stream.session?.close(); // GOAWAY, then close once the stream is done
  });
  await new Promise<void>((r) => closing.listen(0, '127.0.0.1', r));
  const appInbound = await startInbound('closing', 'v1', (closing.address() as net.AddressInfo).port);
  const pair = await startOutbound('web', {
    closing: {
      service: 'closing',
      protocol: 'http',
      routes: [],
      backends: { closing: { name: 'closing', endpoints: [{ id: 'c-0', host: '127.0.0.1', port: appInbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
  const session = http2.connect(`http://127.0.0.1:${pair.addresses.upstreams.closing!.port}`);
  try {
    for (let i = 0; i < 5; i++) {
      const res = await h2Request(session, { ':method': 'GET', ':path': `/g/${i}` });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'bye');
    }
  } finally {
    session.close();
    await pair.close();
    await appInbound.close();
    await new Promise<void>((r) => closing.close(() => r()));
  }
});
