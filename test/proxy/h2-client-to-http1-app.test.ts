// An HTTP/2 client (h2c with prior knowledge, as curl --http2-prior-knowledge and h2load
// are) through a real sidecar pair to an app that speaks only HTTP/1.1 (node:http): the
// inbound sidecar speaks to the app in the app's protocol, declared or probed once per
// instance, translating HTTP/2 ↔ HTTP/1.1 both ways (heads, bodies with backpressure,
// chunked responses, trailers). gRPC stays HTTP/2: a gRPC app is still served as h2, and
// a gRPC call to an HTTP/1.1-only app (or an HTTP/1.1 request to an HTTP/2-only app)
// fails with an error that names the cause.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Protocol } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { h2Request } from '../helpers/h2.js';
import { get, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
/** 1 MiB that is not one byte repeated, so a misplaced or dropped slice changes the digest. */
const MIB = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 7 + (i >> 10)) & 0xff));

interface App {
  server: http.Server;
  port: number;
  probes: number;
}

/** A plain HTTP/1.1 app; `probes` counts connections that opened with the HTTP/2 preface. */
async function startHttp1App(): Promise<App> {
  const app: App = { server: http.createServer(), port: 0, probes: 0 };
  app.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url!, 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (url.pathname === '/status') {
        const status = Number(url.searchParams.get('code'));
        res.writeHead(status, { 'x-status': String(status) });
        res.end(status === 204 || status === 304 ? undefined : `status ${status}`);
      } else if (url.pathname === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': MIB.length, 'x-sha256': sha256(MIB) });
        res.end(MIB);
      } else if (url.pathname === '/chunked') {
        // No Content-Length: node frames it chunked, and the trailer goes at its end.
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
        let i = 0;
        const next = (): void => {
          if (i === 5) {
            res.addTrailers({ 'x-sum': 'part0part1part2part3part4'.length.toString() });
            res.end();
            return;
          }
          res.write(`part${i++}`);
          setImmediate(next);
        };
        next();
      } else {
        res.setHeader('content-type', 'application/json');
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.setHeader('x-app', 'http1');
        res.end(
          JSON.stringify({
            version: req.httpVersion,
            method: req.method,
            url: req.url,
            host: req.headers.host,
            custom: req.headers['x-custom'] ?? null,
            source: req.headers['trellis-source'] ?? null,
            te: req.headers['transfer-encoding'] ?? null,
            length: req.headers['content-length'] ?? null,
            trailer: req.trailers['x-req-trailer'] ?? null,
            size: body.length,
            sha256: sha256(body),
          }),
        );
      }
    });
  });
  app.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    // node's HTTP/1.1 parser stops at the HTTP/2 preface (`PRI * HTTP/2.0`).
    if (err.code === 'HPE_PAUSED_H2_UPGRADE') app.probes++;
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  await new Promise<void>((r) => app.server.listen(0, '127.0.0.1', r));
  app.port = (app.server.address() as net.AddressInfo).port;
  return app;
}

async function closeApp(app: App): Promise<void> {
  app.server.closeAllConnections();
  await new Promise<void>((r) => app.server.close(() => r()));
}

/** An inbound sidecar for `app` (its protocol as given) and an outbound one calling it as service `shop`. */
async function startPair(appPort: number, protocol: Protocol): Promise<{ inbound: Sidecar; outbound: Sidecar; port: number; close: () => Promise<void> }> {
  const inbound = await startInbound('shop', 'v1', appPort, protocol);
  const outbound = await startOutbound('web', {
    shop: {
      service: 'shop',
      protocol,
      routes: [],
      backends: { shop: { name: 'shop', endpoints: [{ id: 'shop-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
  return {
    inbound,
    outbound,
    port: outbound.addresses.upstreams.shop!.port,
    close: async () => {
      await outbound.close();
      await inbound.close();
    },
  };
}

/** Sends `body` (or nothing) on one stream and reads the whole response as bytes. */
function h2Bytes(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      resHeaders = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: resHeaders, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

let app: App;
let pair: Awaited<ReturnType<typeof startPair>>;
let session: http2.ClientHttp2Session;

before(async () => {
  app = await startHttp1App();
  pair = await startPair(app.port, 'http');
  session = http2.connect(`http://127.0.0.1:${pair.port}`);
});

after(async () => {
  session?.close();
  await pair?.close();
  await closeApp(app);
});

test('a GET over HTTP/2 reaches an HTTP/1.1 app as HTTP/1.1, and its status, headers and body come back', async () => {
  const res = await h2Request(session, { ':method': 'GET', ':path': '/things?x=1', ':authority': 'shop.example:8080', 'x-custom': 'yes' });
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-app'], 'http1');
  assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(res.headers['content-type'], 'application/json');
  // Hop-by-hop headers of the HTTP/1.1 response are not HTTP/2 headers.
  assert.equal(res.headers.connection, undefined);
  assert.equal(res.headers['keep-alive'], undefined);
  const seen = JSON.parse(res.body) as Record<string, unknown>;
  assert.deepEqual(
    { version: seen.version, method: seen.method, url: seen.url, host: seen.host, custom: seen.custom, source: seen.source, size: seen.size, te: seen.te },
    { version: '1.1', method: 'GET', url: '/things?x=1', host: 'shop.example:8080', custom: 'yes', source: 'web', size: 0, te: null },
  );
});

test('a 1 MiB request body without a length goes to the app chunked, with its trailer, byte for byte', async () => {
  const req = session.request({ ':method': 'POST', ':path': '/upload' }, { waitForTrailers: true });
  req.on('wantTrailers', () => req.sendTrailers({ 'x-req-trailer': 'sent-last' }));
  const chunks: Buffer[] = [];
  let status = 0;
  req.on('response', (h) => {
    status = Number(h[':status']);
  });
  req.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    req.on('end', resolve);
    req.on('error', reject);
  });
  // In slices, so the body flows under flow control rather than in one write.
  for (let i = 0; i < MIB.length; i += 64 * 1024) req.write(MIB.subarray(i, i + 64 * 1024));
  req.end();
  await done;
  assert.equal(status, 200);
  const seen = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
  assert.deepEqual(
    { size: seen.size, sha256: seen.sha256, te: seen.te, length: seen.length, trailer: seen.trailer },
    { size: MIB.length, sha256: sha256(MIB), te: 'chunked', length: null, trailer: 'sent-last' },
  );
});

test('a 1 MiB request body with a content-length keeps it, and a 1 MiB response comes back intact', async () => {
  const up = await h2Bytes(session, { ':method': 'PUT', ':path': '/upload', 'content-length': String(MIB.length) }, MIB);
  const seen = JSON.parse(up.body.toString()) as Record<string, unknown>;
  assert.deepEqual(
    { size: seen.size, sha256: seen.sha256, te: seen.te, length: seen.length },
    { size: MIB.length, sha256: sha256(MIB), te: null, length: String(MIB.length) },
  );
  const down = await h2Bytes(session, { ':method': 'GET', ':path': '/big' });
  assert.equal(down.status, 200);
  assert.equal(down.headers['content-length'], String(MIB.length));
  assert.equal(sha256(down.body), down.headers['x-sha256']);
});

test('many concurrent streams of one session each get their own answer', async () => {
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => h2Request(session, { ':method': 'POST', ':path': `/n/${i}` }, 'x'.repeat(i * 100))));
  results.forEach((r, i) => {
    const seen = JSON.parse(r.body) as { url: string; size: number };
    assert.deepEqual({ url: seen.url, size: seen.size }, { url: `/n/${i}`, size: i * 100 });
  });
});

test('status codes pass through, body-less ones (204, 304, HEAD) without a body', async () => {
  for (const code of [201, 404, 500, 503]) {
    const res = await h2Request(session, { ':method': 'GET', ':path': `/status?code=${code}` });
    assert.deepEqual({ status: res.status, header: res.headers['x-status'], body: res.body }, { status: code, header: String(code), body: `status ${code}` });
  }
  for (const code of [204, 304]) {
    const res = await h2Request(session, { ':method': 'GET', ':path': `/status?code=${code}` });
    assert.deepEqual({ status: res.status, body: res.body }, { status: code, body: '' });
  }
  const head = await h2Bytes(session, { ':method': 'HEAD', ':path': '/big' });
  assert.deepEqual(
    { status: head.status, length: head.headers['content-length'], body: head.body.length },
    { status: 200, length: String(MIB.length), body: 0 },
  );
});

test('a chunked response streams back as HTTP/2 data, and its trailer as an HTTP/2 trailer', async () => {
  const res = await h2Request(session, { ':method': 'GET', ':path': '/chunked' });
  assert.equal(res.status, 200);
  assert.equal(res.body, 'part0part1part2part3part4');
  assert.equal(res.headers['transfer-encoding'], undefined);
  assert.equal(res.trailers['x-sum'], '25');
});

test('HTTP/1.1 clients still reach the app as before', async () => {
  const res = await get(pair.port, '/plain', { 'x-custom': 'h1' });
  assert.equal(res.status, 200);
  assert.equal((JSON.parse(res.body) as { custom: string }).custom, 'h1');
});

test('an app with no declared protocol is probed once, found HTTP/1.1, and served as such', async () => {
  const own = await startHttp1App();
  const p = await startPair(own.port, 'detect');
  try {
    for (let i = 0; i < 3; i++) {
      const s = http2.connect(`http://127.0.0.1:${p.port}`);
      try {
        const res = await h2Request(s, { ':method': 'GET', ':path': `/d/${i}` });
        assert.equal(res.status, 200);
        assert.equal((JSON.parse(res.body) as { version: string; url: string }).url, `/d/${i}`);
      } finally {
        s.close();
      }
    }
    assert.equal(own.probes, 1);
  } finally {
    await p.close();
    await closeApp(own);
  }
});

test('an app declared http1 is not probed', async () => {
  const own = await startHttp1App();
  const p = await startPair(own.port, 'http1');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  try {
    const res = await h2Request(s, { ':method': 'POST', ':path': '/declared' }, 'body');
    assert.equal((JSON.parse(res.body) as { version: string; size: number }).size, 4);
    assert.equal(own.probes, 0);
  } finally {
    s.close();
    await p.close();
    await closeApp(own);
  }
});

test('an HTTP/1.1 app declared http2: after the first failure, HTTP/2 requests are told the declaration is wrong, and HTTP/1.1 ones reach it', async () => {
  const own = await startHttp1App();
  const p = await startPair(own.port, 'http2');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  try {
    // The first request fails as any request to an app that won't speak HTTP/2 does; it makes the sidecar probe.
    assert.notEqual((await h2Request(s, { ':method': 'GET', ':path': '/first' })).status, 200);
    const told = await eventually(
      async () => {
        const res = await h2Request(s, { ':method': 'GET', ':path': '/later' });
        return res.headers['trellis-error'] === 'app-protocol' ? res : false;
      },
      { timeoutMs: 3000, what: 'the wrong declaration to be named' },
    );
    assert.equal(told.status, 502);
    assert.match((JSON.parse(told.body) as { message: string }).message, /speaks HTTP\/1\.1 only, and it is declared HTTP\/2-only/);
    const h1 = await get(p.port, '/plain');
    assert.equal(h1.status, 200);
  } finally {
    s.close();
    await p.close();
    await closeApp(own);
  }
});

test('an app that restarts is probed again: refused while down, then served as what it now speaks', async () => {
  const own = await startHttp1App();
  const p = await startPair(own.port, 'http');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  let h2app: http2.Http2Server | undefined;
  try {
    assert.equal((await h2Request(s, { ':method': 'GET', ':path': '/before' })).status, 200);
    await closeApp(own);
    const down = await h2Request(s, { ':method': 'GET', ':path': '/down' });
    assert.equal(down.headers['trellis-error'], 'connect-failed'); // the outbound side's word for "its app is unavailable"
    // Back on the same port, now speaking HTTP/2 only.
    h2app = http2.createServer();
    h2app.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(`h2 ${headers[':path']}`);
    });
    await new Promise<void>((r) => h2app!.listen(own.port, '127.0.0.1', r));
    const res = await h2Request(s, { ':method': 'GET', ':path': '/after' });
    assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'h2 /after' });
  } finally {
    s.close();
    await p.close();
    if (h2app) await new Promise<void>((r) => h2app!.close(() => r()));
  }
});

test('an app restarted as an HTTP/2 server with no refused request in between: the first request names the cause, the next is served as HTTP/2', async () => {
  const own = await startHttp1App();
  const p = await startPair(own.port, 'http');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  let h2app: http2.Http2Server | undefined;
  try {
    assert.equal((await h2Request(s, { ':method': 'GET', ':path': '/before' })).status, 200);
    await closeApp(own);
    h2app = http2.createServer();
    h2app.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('h2');
    });
    await new Promise<void>((r) => h2app!.listen(own.port, '127.0.0.1', r));
    const first = await h2Request(s, { ':method': 'GET', ':path': '/first' });
    assert.deepEqual({ status: first.status, error: first.headers['trellis-error'] }, { status: 502, error: 'app-protocol' });
    assert.match((JSON.parse(first.body) as { message: string }).message, /speaks HTTP\/2/);
    const next = await h2Request(s, { ':method': 'GET', ':path': '/next' });
    assert.deepEqual({ status: next.status, body: next.body }, { status: 200, body: 'h2' });
  } finally {
    s.close();
    await p.close();
    if (h2app) await new Promise<void>((r) => h2app!.close(() => r()));
  }
});

/** An "HTTP/1.1" app that answers each request with the raw bytes its path names (or streams forever, or never answers). */
async function startRawApp(answers: Record<string, string>): Promise<{ server: net.Server; port: number; open: Set<net.Socket> }> {
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    sock.on('error', () => sock.destroy());
    let seen = '';
    sock.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      if (seen.startsWith('PRI ')) return void sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      const m = /^\S+ (\S+) HTTP\/1\.1\r\n[\s\S]*?\r\n\r\n/.exec(seen);
      if (m === null) return;
      seen = '';
      if (m[1] === '/forever') {
        sock.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
        const tick = setInterval(() => sock.write('5\r\ntick.\r\n'), 5);
        sock.on('close', () => clearInterval(tick));
        return;
      }
      sock.write(answers[m[1]!] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, open };
}

test('a response HTTP/2 cannot carry is answered 502 with the reason, and the next one is served', async () => {
  const raw = await startRawApp({
    '/nul': 'HTTP/1.1 200 OK\r\nx-bad: a\x00b\r\ncontent-length: 2\r\n\r\nok',
    '/status': 'HTTP/1.1 700 Odd\r\ncontent-length: 2\r\n\r\nok',
    '/switch': 'HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n',
    '/coding': 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
    '/name': 'HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok',
    '/good': 'HTTP/1.1 200 OK\r\nX-Hop: dropped\r\nConnection: keep-alive, x-hop\r\nX-Kept: Yes\r\ncontent-length: 2\r\n\r\nok',
  });
  const p = await startPair(raw.port, 'http1');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  try {
    for (const [path, reason] of [
      ['/nul', /invalid character in a header value/],
      ['/status', /invalid status code/],
      ['/switch', /switched protocols|Switching Protocols to a request that asked for no upgrade/],
      ['/coding', /transfer-coding/],
      ['/name', /invalid header name|the name is not a token/],
    ] as const) {
      const res = await h2Request(s, { ':method': 'GET', ':path': path });
      assert.equal(res.status, 502, path);
      assert.equal(res.headers['trellis-error'], 'upstream-protocol', path);
      assert.match((JSON.parse(res.body) as { message: string }).message, reason, path);
    }
    const good = await h2Request(s, { ':method': 'GET', ':path': '/good' });
    assert.deepEqual(
      { status: good.status, kept: good.headers['x-kept'], hop: good.headers['x-hop'], body: good.body },
      { status: 200, kept: 'Yes', hop: undefined, body: 'ok' },
    );
  } finally {
    s.close();
    await p.close();
    raw.server.close();
    for (const sock of raw.open) sock.destroy();
  }
});

test('a client that cancels its stream mid-response: the app connection carrying it is closed', async () => {
  const raw = await startRawApp({});
  const p = await startPair(raw.port, 'http1');
  const s = http2.connect(`http://127.0.0.1:${p.port}`);
  try {
    const req = s.request({ ':method': 'GET', ':path': '/forever' });
    req.on('error', () => {});
    await new Promise<void>((r) => req.once('data', () => r()));
    assert.equal(raw.open.size, 1);
    req.close(http2.constants.NGHTTP2_CANCEL);
    await eventually(() => raw.open.size === 0, { timeoutMs: 3000, what: 'the app connection to close' });
  } finally {
    s.close();
    await p.close();
    raw.server.close();
    for (const sock of raw.open) sock.destroy();
  }
});

// gRPC: HTTP/2 only.

const serialize = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const deserialize = (b: Buffer): unknown => JSON.parse(b.toString());
const ECHO = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  },
} satisfies grpc.ServiceDefinition;
const EchoClient = grpc.makeGenericClientConstructor(ECHO, 'Echo');

function callEcho(port: number, text: string): Promise<{ value?: unknown; error?: grpc.ServiceError }> {
  const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.Echo({ text }, (err: grpc.ServiceError | null, value: unknown) => {
      client.close();
      resolve(err ? { error: err } : { value });
    });
  });
}

async function startGrpcApp(): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(ECHO, {
    Echo(call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { text: call.request.text.toUpperCase() });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

for (const protocol of ['http', 'detect', 'grpc'] as const) {
  test(`a gRPC app (protocol ${protocol}) is still served as HTTP/2`, async () => {
    const g = await startGrpcApp();
    const p = await startPair(g.port, protocol);
    try {
      assert.deepEqual(await callEcho(p.port, 'hi'), { value: { text: 'HI' } });
      assert.deepEqual(await callEcho(p.port, 'again'), { value: { text: 'AGAIN' } });
    } finally {
      await p.close();
      g.server.forceShutdown();
    }
  });
}

test('a gRPC call to an app that speaks only HTTP/1.1 fails with a gRPC status that names the cause', async () => {
  const { error } = await callEcho(pair.port, 'hi');
  assert.ok(error, 'the call fails');
  assert.equal(error.code, grpc.status.UNIMPLEMENTED);
  assert.equal(error.metadata.get('trellis-error')[0], 'app-protocol');
  assert.match(error.details, /TRELLIS_E_APP_PROTOCOL: .*HTTP\/1\.1 only.*gRPC/);
});

for (const protocol of ['http', 'grpc'] as const) {
  test(`an HTTP/1.1 request to an app that speaks only HTTP/2 (protocol ${protocol}) gets an error that names the cause`, async () => {
    const g = await startGrpcApp();
    const p = await startPair(g.port, protocol);
    try {
      const res = await get(p.port, '/test.Echo/Echo');
      assert.equal(res.status, 502);
      assert.equal(res.headers['trellis-error'], 'app-protocol');
      const body = JSON.parse(res.body) as { code: string; message: string };
      assert.equal(body.code, 'TRELLIS_E_APP_PROTOCOL');
      assert.match(body.message, /HTTP\/2/);
    } finally {
      await p.close();
      g.server.forceShutdown();
    }
  });
}
