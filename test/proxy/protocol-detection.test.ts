// A service with no declared protocol: each connection's first bytes decide. Through a
// sidecar pair (both sides detecting), one port carries HTTP/1.1, HTTP/2 (h2c) and
// opaque TCP bytes to the same app; a client that says nothing (a server-first
// protocol) is served as TCP after the detect timeout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { sniffProtocol } from '../../src/proxy/listeners/detect.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { get, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: net.Server;
let appH1: http.Server;
let appH2: http2.Http2Server;
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;

/** The app speaks all three on one port, telling them apart by its own simple check. */
function startApp(): Promise<number> {
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    res.end(`http ${req.httpVersion} ${req.url}`);
  };
  appH1 = http.createServer(handler);
  appH2 = http2.createServer(handler);
  app = net.createServer((socket) => {
    let said = false;
    // A server-first greeting when the client stays quiet (the app's behaviour under test, not a wait).
    const greet = setTimeout(() => {
      if (!said) socket.write('220 hello, this server speaks first\r\n');
    }, 50);
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      said = true;
      clearTimeout(greet);
      const text = first.toString('latin1');
      if (text.startsWith('PRI * HTTP/2.0')) {
        socket.pause();
        socket.unshift(first);
        appH2.emit('connection', socket);
      } else if (/^[A-Z]+ \/\S* HTTP\/1\.1\r\n/.test(text)) {
        appH1.emit('connection', socket);
        socket.emit('data', first);
      } else {
        // Opaque: an upper-casing echo.
        socket.write(text.toUpperCase());
        socket.on('data', (c: Buffer) => socket.write(c.toString('latin1').toUpperCase()));
      }
    });
  });
  return new Promise((resolve) => app.listen(0, '127.0.0.1', () => resolve((app.address() as net.AddressInfo).port)));
}

before(async () => {
  const appPort = await startApp();
  inbound = await startInbound('svc', 'v1', appPort, 'detect', { detectTimeoutMs: 200 });
  outbound = await startOutbound(
    'web',
    {
      svc: {
        service: 'svc',
        protocol: 'detect',
        routes: [],
        backends: { svc: { name: 'svc', endpoints: [{ id: 'svc-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
      },
    },
    { detectTimeoutMs: 200 },
  );
  port = outbound.addresses.upstreams.svc!.port;
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  appH1.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
});

/** Sends `data` (when given) and collects what comes back until it contains `until`. */
function tcpExchange(data: string | undefined, until: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    sock.on('data', (c: Buffer) => {
      out += c.toString('latin1');
      if (out.includes(until)) {
        sock.destroy();
        resolve(out);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(out));
    if (data !== undefined) sock.write(data);
  });
}

test('the first bytes are classified: h2 preface, HTTP/1.x request line, anything else', () => {
  assert.equal(sniffProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2');
  assert.equal(sniffProtocol(Buffer.from('PRI * HT')), 'more');
  assert.equal(sniffProtocol(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'h1');
  assert.equal(sniffProtocol(Buffer.from('GET /a-long-pa')), 'more');
  assert.equal(sniffProtocol(Buffer.from('PING\r\n')), 'opaque');
  assert.equal(sniffProtocol(Buffer.from('*1\r\n$4\r\nPING\r\n')), 'opaque');
  assert.equal(sniffProtocol(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])), 'opaque');
});

test('HTTP/1.1 to an undeclared service is proxied as HTTP', async () => {
  const res = await get(port, '/one');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'http 1.1 /one');
});

test('h2c to an undeclared service is proxied as HTTP/2', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/two' });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        text += c;
      });
      req.on('end', () => resolve(text));
      req.on('error', reject);
    });
    assert.equal(body, 'http 2.0 /two');
  } finally {
    session.close();
  }
});

test('other bytes to an undeclared service go through as opaque TCP, first bytes included', async () => {
  assert.equal(await tcpExchange('hello raw\n', 'HELLO RAW\n'), 'HELLO RAW\n');
});

test('a client that sends nothing (server-first protocol) is served as TCP after the detect timeout', async () => {
  assert.match(await tcpExchange(undefined, '\r\n'), /^220 hello/);
});
