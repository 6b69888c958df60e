// HTTP/1.1 upgrades through a sidecar pair: only the protocols the destination service
// permits (WebSocket by default) become byte tunnels; an h2c upgrade is forwarded as a
// plain request; a 101 the request did not ask for is refused (502), so bytes after it
// are still parsed and routed; every tunnel is counted and logged with its bytes; and
// CONNECT (HTTP/1.1 and HTTP/2) is refused. The app is a raw server that answers 101
// when told to, whatever the request said, as a hostile or broken app would.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { h2Request } from '../helpers/h2.js';
import { rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

/** Every request head the app received, and every byte it got through a tunnel. */
const heads: string[] = [];
const tunnelled: string[] = [];
let app: net.Server;
let inbound: Sidecar;
let outbound: Sidecar;
let logDir: string;
let logFile: string;

/**
 * The app: `/api/101-<protocol>` is answered `101` switching to <protocol>, whatever the
 * request asked; then the connection echoes, except that a `GET /admin` in it is
 * answered as the admin page a route would have refused. Anything else gets 200.
 */
function rawApp(): net.Server {
  return net.createServer((sock) => {
    let tunnel = false;
    let buf = '';
    sock.on('error', () => sock.destroy());
    sock.on('data', (c: Buffer) => {
      if (tunnel) {
        tunnelled.push(c.toString('latin1'));
        if (c.includes('GET /admin')) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret');
        else sock.write(c);
        return;
      }
      buf += c.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        const m = /^\S+ \/api\/101-(\S+) /.exec(head);
        if (m) {
          sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${m[1]}\r\nConnection: Upgrade\r\n\r\n`);
          tunnel = true;
          if (buf) sock.write(buf);
          return;
        }
        sock.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain');
      }
    });
  });
}

function upstream(service: string, port: number, upgrades?: string[]): UpstreamSnapshot {
  return {
    service,
    protocol: 'http',
    routes: [{ name: `${service}/only-api`, match: { path: { type: 'PathPrefix', value: '/api' } }, backends: [{ backend: service, weight: 1 }] }],
    backends: { [service]: { name: service, endpoints: [{ id: `${service}-0`, host: '127.0.0.1', port, version: 'v1' }] } },
    ...(upgrades ? { upgrades } : {}),
  };
}

before(async () => {
  app = rawApp();
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('api', 'v1', (app.address() as net.AddressInfo).port);
  // The app's own sidecar permits the protocols of both names the callers use below.
  inbound.apply({ version: 2, service: 'api', inboundProtocol: 'http', upstreams: {}, inboundUpgrades: ['websocket', 'x-echo'] });
  logDir = await mkdtemp(path.join(tmpdir(), 'trellis-upgrade-'));
  logFile = path.join(logDir, 'access.log');
  const port = inbound.addresses.inbound!.port;
  // `api` permits the default (WebSocket); `echoer` is the same app, declared with a protocol of its own.
  // `open` has no route of its own: every path goes to the app.
  const open: UpstreamSnapshot = { ...upstream('open', port), routes: [] };
  outbound = await startOutbound(
    'web',
    { api: upstream('api', port), echoer: upstream('echoer', port, ['x-echo', 'websocket']), open },
    { accessLog: logFile },
  );
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await new Promise<void>((r) => app.close(() => r()));
  await rm(logDir, { recursive: true, force: true });
});

/** Writes `first`, reads one response head (and `bodyBytes` of body), then writes `second` and collects until close or `ms`. */
function twoStep(port: number, first: string, second: string, ms = 1500): Promise<{ first: string; rest: string }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    let firstPart: string | undefined;
    const done = (): void => {
      clearTimeout(t);
      sock.destroy();
      resolve({ first: firstPart ?? got, rest: firstPart === undefined ? '' : got.slice(firstPart.length) });
    };
    const t = setTimeout(done, ms);
    sock.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (firstPart === undefined && got.includes('\r\n\r\n')) {
        const end = got.indexOf('\r\n\r\n') + 4;
        const len = /content-length: (\d+)/i.exec(got.slice(0, end));
        const total = end + (len ? Number(len[1]) : 0);
        if (got.length < total) return;
        firstPart = got.slice(0, total);
        sock.write(second);
      }
    });
    sock.on('close', done);
    sock.on('error', done);
    sock.write(first);
  });
}

const apiPort = (): number => outbound.addresses.upstreams.api!.port;

test('an h2c upgrade is forwarded as a plain request, and a 101 to it is refused: later bytes are routed, never tunnelled', async () => {
  heads.length = 0;
  tunnelled.length = 0;
  const r = await twoStep(
    apiPort(),
    'GET /api/101-h2c HTTP/1.1\r\nHost: api\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    'GET /admin HTTP/1.1\r\nHost: api\r\n\r\n',
  );
  assert.match(r.first, /^HTTP\/1\.1 502 /, r.first);
  assert.match(r.first, /trellis-error: upstream-protocol/);
  // The second request is read as a request, and the route (only /api) refuses it.
  assert.match(r.rest, /^HTTP\/1\.1 404 /, r.rest);
  assert.ok(!heads.some((h) => h.includes('/admin')) && !tunnelled.some((t) => t.includes('/admin')), 'GET /admin never reached the app');
  const h2c = heads.find((h) => h.includes('/api/101-h2c'));
  assert.ok(h2c, 'the app got the request');
  assert.doesNotMatch(h2c, /upgrade|http2-settings/i, 'forwarded without the h2c upgrade headers');
});

test('a 101 to a request that asked for no upgrade is refused with 502', async () => {
  const out = await rawExchange(apiPort(), 'GET /api/101-websocket HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n', 1500);
  assert.match(out, /^HTTP\/1\.1 502 /, out);
  assert.match(out, /trellis-error: upstream-protocol/);
});

test('a 101 switching to a protocol the request did not offer is refused with 502', async () => {
  const out = await rawExchange(apiPort(), 'GET /api/101-x-other HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', 1500);
  assert.match(out, /^HTTP\/1\.1 502 /, out);
});

test('Upgrade in an HTTP/1.0 request is ignored (RFC 9110 §7.8): forwarded without it, and a 101 to it refused', async () => {
  heads.length = 0;
  const out = await rawExchange(apiPort(), 'GET /api/101-websocket HTTP/1.0\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', 1500);
  assert.match(out, /^HTTP\/1\.1 502 /, out);
  assert.doesNotMatch(heads.find((h) => h.includes('/api/101-websocket')) ?? '', /upgrade/i);
});

test('a protocol the service does not permit is refused with 403 before anything is sent', async () => {
  heads.length = 0;
  const out = await rawExchange(apiPort(), 'GET /api/101-x-echo HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n', 1500);
  assert.match(out, /^HTTP\/1\.1 403 /, out);
  assert.match(out, /trellis-error: upgrade-refused/);
  assert.equal(heads.length, 0, 'nothing reached the app');
  // The app's own sidecar holds callers to its list too.
  const direct = await rawExchange(
    inbound.addresses.inbound!.port,
    'GET /api/101-x-rude HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: x-rude\r\n\r\n',
    1500,
  );
  assert.match(direct, /^HTTP\/1\.1 403 /, direct);
});

test('a permitted upgrade becomes a tunnel, counted and logged with its bytes when it closes', async () => {
  const port = outbound.addresses.upstreams.echoer!.port;
  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  sock.on('data', (c: Buffer) => {
    got += c.toString('latin1');
  });
  sock.write('GET /api/101-x-echo HTTP/1.1\r\nHost: echoer\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n');
  await eventually(() => got.includes('\r\n\r\n'), { timeoutMs: 3000, what: 'the 101' });
  assert.match(got, /^HTTP\/1\.1 101 /, got);
  sock.write('ping-1234');
  await eventually(() => got.endsWith('ping-1234'), { timeoutMs: 3000, what: 'the echo' });
  const metrics = await outbound.metrics.text();
  assert.match(metrics, /trellis_http_tunnels_total\{[^}]*destination="echoer"[^}]*protocol="x-echo"[^}]*\} 1/);
  assert.match(metrics, /trellis_http_tunnels_active\{[^}]*destination="echoer"[^}]*\} 1/);
  sock.destroy();
  const line = await eventually(
    async () => {
      const text = await readFile(logFile, 'utf8').catch(() => '');
      return (
        text
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((e) => e.tunnel === 'x-echo') ?? false
      );
    },
    { timeoutMs: 3000, what: "the tunnel's access-log line" },
  );
  assert.equal(line.destination, 'echoer');
  assert.equal(line.bytes_sent, 'ping-1234'.length);
  assert.equal(line.bytes_received, 'ping-1234'.length);
  assert.equal(typeof line.duration_ms, 'number');
  const after = await eventually(
    async () => {
      const m = await outbound.metrics.text();
      return /trellis_http_tunnels_active\{[^}]*destination="echoer"[^}]*\} 0/.test(m) ? m : false;
    },
    { timeoutMs: 3000, what: 'the tunnel to close' },
  );
  assert.match(after, /trellis_http_tunnel_bytes_total\{[^}]*destination="echoer"[^}]*flow="sent"[^}]*\} 9/);
});

test('CONNECT is refused on HTTP/1.1, in authority-form and origin-form', async () => {
  heads.length = 0;
  for (const line of ['CONNECT api:443 HTTP/1.1', 'CONNECT /api/x HTTP/1.1']) {
    const out = await rawExchange(apiPort(), `${line}\r\nHost: api\r\n\r\n`, 1500);
    assert.match(out, /^HTTP\/1\.1 400 /, `${line}: ${out}`);
  }
  assert.equal(heads.length, 0, 'nothing reached the app');
});

test('CONNECT on HTTP/2 is refused, and the listener keeps serving', { timeout: 15_000 }, async () => {
  // On a listener whose default route takes every path (a CONNECT has none to match).
  const session = http2.connect(`http://127.0.0.1:${outbound.addresses.upstreams.open!.port}`);
  session.on('error', () => {});
  try {
    const r = await h2Request(session, { ':method': 'CONNECT', ':authority': 'elsewhere:443' });
    assert.equal(r.status, 400);
  } finally {
    session.close();
  }
  const ok = await rawExchange(apiPort(), 'GET /api/fine HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n', 1500);
  assert.match(ok, /^HTTP\/1\.1 200 /);
});

/** An HTTP/2 frame: 9-byte header and payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  payload.copy(b, 9);
  return b;
}

/** HPACK literal fields without indexing, no Huffman (each name and value under 127 bytes). */
function hpack(fields: [string, string][]): Buffer {
  return Buffer.concat(fields.flatMap(([n, v]) => [Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]));
}

test('extended CONNECT (RFC 8441, a WebSocket over HTTP/2) is refused with a stream reset: the server does not enable it', async () => {
  heads.length = 0;
  const sock = net.connect(outbound.addresses.upstreams.open!.port, '127.0.0.1');
  let got = Buffer.alloc(0);
  sock.on('data', (c: Buffer) => {
    got = Buffer.concat([got, c]);
  });
  sock.on('error', () => {});
  try {
    const headers = hpack([
      [':method', 'CONNECT'],
      [':protocol', 'websocket'],
      [':scheme', 'http'],
      [':path', '/api/101-websocket'],
      [':authority', 'open'],
    ]);
    sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, headers)]));
    // RST_STREAM (type 3) on stream 1.
    await eventually(
      () => {
        for (let i = 0; i + 9 <= got.length; i += 9 + got.readUIntBE(i, 3)) if (got[i + 3] === 3 && got.readUInt32BE(i + 5) === 1) return true;
        return false;
      },
      { timeoutMs: 3000, what: 'a RST_STREAM' },
    );
    assert.equal(heads.length, 0, 'nothing reached the app');
  } finally {
    sock.destroy();
  }
});
