// Upstream connections read into a buffer of their own that is reused read after read
// (src/proxy/http1/upstream-connection.ts). These send responses through a real sidecar pair
// in the ways that keep bytes of that buffer alive past a read, and check every byte
// arrives as sent: a client too slow to take a large body (writes queue up), a response
// head that arrives in pieces, a chunked body written in many small pieces, and a 101
// tunnel carrying several megabytes each way.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { Exchange, type ClientSide } from '../../src/proxy/stack/exchange.js';
import { withEndpoint } from '../../src/proxy/stack/decisions.js';
import { isFailure, parseRequestHead } from '../../src/http1/http1-parser.js';
import { UpstreamConnection } from '../../src/proxy/http1/upstream-connection.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { makeLeaf, makeRoot } from '../helpers/test-pki.js';
import { eventually } from '../helpers/eventually.js';

/** Deterministic bytes that differ at every offset, so a reused buffer shows. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** Gaps between writes (and reads) are what these tests are about: bytes that arrive in separate reads. */
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const BIG = pattern(6 * 1024 * 1024, 1);
const PIECES = Array.from({ length: 200 }, (_, i) => pattern(100 + i * 37, i + 7));
const SMALL = pattern(4 * 1024 * 1024, 3);

let app: { server: http.Server; port: number };
let rawApp: net.Server;
let inbound: Sidecar;
let rawInbound: Sidecar;
let outbound: Sidecar;

before(async () => {
  app = await listenHttp((req, res) => {
    if (req.url === '/big') {
      res.setHeader('content-length', BIG.length);
      res.end(BIG);
      return;
    }
    if (req.url === '/small-writes') {
      // 4 MB as 1 KB writes, yielding now and then so they reach the sidecars as many small reads.
      res.setHeader('content-length', SMALL.length);
      void (async () => {
        for (let i = 0; i < SMALL.length; i += 1024) {
          if (!res.write(SMALL.subarray(i, i + 1024))) await new Promise((r) => res.once('drain', r));
          if ((i / 1024) % 16 === 0) await new Promise((r) => setImmediate(r));
        }
        res.end();
      })();
      return;
    }
    if (req.url!.startsWith('/close/')) {
      // A body of its own per request, on a connection the app then closes: the sidecar's
      // next connections take the read buffers of the closed ones.
      const n = Number(req.url!.slice(7));
      res.setHeader('connection', 'close');
      res.end(pattern(2000 + n, n));
      return;
    }
    if (req.url === '/pieces') {
      // Chunked: each piece is its own write, a few of them after a pause.
      void (async () => {
        for (const [i, p] of PIECES.entries()) {
          res.write(p);
          if (i % 40 === 0) await pause(5);
        }
        res.end();
      })();
      return;
    }
    res.end('ok');
  });
  app.server.on('upgrade', (_req, socket: net.Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  // An app that writes its response head a few bytes at a time.
  rawApp = net.createServer((s) => {
    s.once('data', () => {
      const body = pattern(3000, 99);
      const head = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nx-slow: yes\r\ncontent-length: ${body.length}\r\n\r\n`);
      void (async () => {
        for (let i = 0; i < head.length; i += 7) {
          s.write(head.subarray(i, i + 7));
          await pause(2);
        }
        s.write(body.subarray(0, 1000));
        await pause(5);
        s.end(body.subarray(1000));
      })();
    });
  });
  await new Promise<void>((r) => rawApp.listen(0, '127.0.0.1', r));
  inbound = await startInbound('api', 'v1', app.port);
  rawInbound = await startInbound('slow', 'v1', (rawApp.address() as net.AddressInfo).port);
  const one = (service: string, port: number) => ({
    service,
    protocol: 'http' as const,
    routes: [],
    backends: { [service]: { name: service, endpoints: [{ id: `${service}-0`, host: '127.0.0.1', port, version: 'v1' }] } },
  });
  outbound = await startOutbound('web', { api: one('api', inbound.addresses.inbound!.port), slow: one('slow', rawInbound.addresses.inbound!.port) });
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await rawInbound.close();
  await closeServer(app.server);
  await new Promise<void>((r) => rawApp.close(() => r()));
});

/** GET through the outbound sidecar, reading the body slowly when `slow` (the socket is paused between chunks). */
function fetchBytes(service: string, path: string, slow = false, stallMs = 0): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const port = outbound.addresses.upstreams[service]!.port;
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      if (stallMs > 0) {
        // Read nothing for a while: the kernel's buffers fill and the sidecar's writes to us queue.
        res.pause();
        setTimeout(() => res.resume(), stallMs);
      }
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        if (slow && chunks.length % 4 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 3);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('a 6 MB body to a slow client arrives whole and in order, twice over one pool', async () => {
  for (let i = 0; i < 2; i++) {
    const r = await fetchBytes('api', '/big', true);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, BIG.length);
    assert.equal(sha(r.body), sha(BIG));
  }
});

test('4 MB in 1 KB reads to a client that stalls, then reads slowly, arrives whole', async () => {
  const r = await fetchBytes('api', '/small-writes', true, 300);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, SMALL.length);
  assert.equal(sha(r.body), sha(SMALL));
});

test('200 requests on connections the app closes, 10 at a time, each get their own body', async () => {
  for (let batch = 0; batch < 20; batch++) {
    const ns = Array.from({ length: 10 }, (_, i) => batch * 10 + i);
    const rs = await Promise.all(ns.map((n) => fetchBytes('api', `/close/${n}`)));
    for (const [i, r] of rs.entries()) assert.equal(sha(r.body), sha(pattern(2000 + ns[i]!, ns[i]!)), `request ${ns[i]}`);
  }
});

test('a chunked body written in 200 small pieces arrives whole', async () => {
  const r = await fetchBytes('api', '/pieces');
  assert.equal(r.status, 200);
  assert.equal(sha(r.body), sha(Buffer.concat(PIECES)));
});

test('a response head that arrives 7 bytes at a time is read whole', async () => {
  const r = await fetchBytes('slow', '/');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-slow'], 'yes');
  assert.equal(sha(r.body), sha(pattern(3000, 99)));
});

test('a 101 tunnel echoes 4 MB each way intact', async () => {
  const port = outbound.addresses.upstreams.api!.port;
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  sock.write('GET /ws HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  const payload = pattern(4 * 1024 * 1024, 5);
  const got = await new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let headDone = false;
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!headDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        assert.match(buf.subarray(0, end).toString(), /^HTTP\/1\.1 101/);
        buf = buf.subarray(end + 4);
        headDone = true;
        sock.write(payload);
      }
      if (buf.length >= payload.length) resolve(buf);
    });
    sock.on('error', reject);
  });
  sock.destroy();
  assert.equal(got.length, payload.length);
  assert.equal(sha(got), sha(payload));
});

test('bytes still queued for the client are never overwritten by the next read', async () => {
  // A client whose socket never writes anything through: every write stays queued,
  // holding the very buffer it was given (as Node's queue does), and says it has room.
  const queued: Buffer[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const socket = {
    destroyed: false,
    write(b: Buffer): boolean {
      queued.push(b);
      return true;
    },
    get writableLength(): number {
      return queued.reduce((n, b) => n + b.length, 0);
    },
    once(): void {},
  };
  const client: ClientSide = {
    socket: socket as unknown as net.Socket,
    exchangeDone: () => done(),
    resumeBody: () => {},
    pauseBody: () => {},
    detach: () => undefined,
  };
  // An upstream that sends a response in five separate writes, each read on its own.
  const parts = [0, 1, 2, 3, 4].map((i) => pattern(1000, 50 + i));
  const server = net.createServer((s) => {
    s.once('data', () => {
      void (async () => {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n');
        for (const p of parts) {
          await pause(15);
          s.write(p);
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const head = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1');
  const req = parseRequestHead(head, head.length);
  if (isFailure(req)) assert.fail(req.reason);
  const ex = withEndpoint(new Exchange(client, req, head), { id: 'up', host: '127.0.0.1', port, version: 'v1' });
  ex.requestBodyDone = true;
  const conn = new UpstreamConnection('127.0.0.1', port, `127.0.0.1:${port}`, {
    resetCode: 'TRELLIS_E_UPSTREAM_RESET',
    release: (c) => c.close(),
    gone: () => {},
    unsent: () => assert.fail('nothing is refused here'),
  });
  conn.send(ex);
  await finished;
  await new Promise<void>((r) => server.close(() => r()));
  const all = Buffer.concat(queued);
  const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
  assert.equal(body.length, 5000);
  assert.equal(sha(body), sha(Buffer.concat(parts)), 'every queued part still holds its own bytes');
});

test('responses relayed to a TLS client reuse the read buffer instead of taking a new one each', async () => {
  // A TLS socket encrypts each write at once (its bytes are copied into the TLS record),
  // yet says `writableLength > 0` until the ciphertext is written: judged as a TCP
  // socket, every response to a peer sidecar over mTLS took a fresh 64 KiB read buffer.
  const root = await makeRoot();
  const leaf = await makeLeaf({ root, trust: [root] });
  const body = pattern(3000, 11);
  const app = await listenHttp((_req, res) => {
    res.setHeader('content-length', body.length);
    res.end(body);
  });
  const tlsServer = tls.createServer({ key: leaf.material.key, cert: leaf.material.cert });
  const accepted = new Promise<tls.TLSSocket>((r) => tlsServer.once('secureConnection', r));
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  const tlsClient = tls.connect({ host: '127.0.0.1', port: (tlsServer.address() as net.AddressInfo).port, ca: root.pem, checkServerIdentity: () => undefined });
  let received = 0;
  tlsClient.on('data', (c: Buffer) => {
    received += c.length;
  });
  const socket = await accepted;
  let done: () => void = () => {};
  const client: ClientSide = {
    socket,
    exchangeDone: () => done(),
    resumeBody: () => {},
    pauseBody: () => {},
    detach: () => undefined,
  };
  const head = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1');
  const conn = new UpstreamConnection('127.0.0.1', app.port, `127.0.0.1:${app.port}`, {
    resetCode: 'TRELLIS_E_UPSTREAM_RESET',
    release: () => {},
    gone: () => {},
    unsent: () => assert.fail('nothing is refused here'),
  });
  const realAlloc = Buffer.allocUnsafeSlow;
  let largeReadBuffers = 0;
  Buffer.allocUnsafeSlow = ((size: number) => {
    if (size === 64 * 1024) largeReadBuffers++;
    return realAlloc(size);
  }) as typeof Buffer.allocUnsafeSlow;
  try {
    for (let i = 0; i < 40; i++) {
      const before = received;
      const req = parseRequestHead(head, head.length);
      if (isFailure(req)) assert.fail(req.reason);
      const ex = withEndpoint(new Exchange(client, req, head), { id: 'up', host: '127.0.0.1', port: app.port, version: 'v1' });
      ex.requestBodyDone = true;
      await new Promise<void>((r) => {
        done = r;
        conn.send(ex);
      });
      await eventually(() => received > before + body.length);
    }
  } finally {
    Buffer.allocUnsafeSlow = realAlloc;
    conn.close();
    tlsClient.destroy();
    await new Promise<void>((r) => tlsServer.close(() => r()));
    await closeServer(app.server);
  }
  assert.ok(largeReadBuffers <= 2, `40 responses took ${largeReadBuffers} new 64 KiB read buffers`);
});
