// A gateway proxy serving a Gateway's ports from its snapshot: HTTPS with the
// certificate chosen by SNI (two names, two certificates), ALPN h2, the forwarding
// headers and a request id, an HTTP port redirecting to HTTPS, certificates swapped
// without dropping connections; and what hostile clients get: an unknown SNI, random
// bytes, plain HTTP on the HTTPS port, an oversized head, a silent TLS client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes, X509Certificate } from 'node:crypto';
import type { GatewayCertificate, Snapshot } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { issueServerCertificate, makeLocalCa, type PemPair } from '../../src/security/local-tls.js';
import { closeServer, listenHttp, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

let app: { server: http.Server; port: number };
let gw: Sidecar;
/** The app's sidecar: the gateway forwards into the mesh as any sidecar does (HTTP/2 as h2c to the peer). */
let inbound: Sidecar;
let ca: PemPair;
let certA: PemPair;
let certB: PemPair;
let httpsPort = 0;
let httpPort = 0;

function snapshot(version: number, a: PemPair, limits: Snapshot['limits'] = undefined): Snapshot {
  const cert = (name: string, hostname: string, p: PemPair): GatewayCertificate => ({ name, hostname, chain: p.cert, key: p.key });
  const backend = { app: { name: 'app', endpoints: [{ id: 'app-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'default' }] } };
  return {
    version,
    service: 'gw',
    inboundProtocol: 'http',
    meshServices: ['app', 'gw'],
    ...(limits ? { limits } : {}),
    upstreams: {
      'default/gw/8443': {
        service: 'default/gw/8443',
        protocol: 'http',
        explicitRoutes: true,
        routes: [
          {
            name: 'default/site-a/rule/0',
            hostname: 'a.example.test',
            match: { path: { type: 'PathPrefix', value: '/' } },
            backends: [{ backend: 'app', weight: 1 }],
          },
          {
            name: 'default/site-b/rule/0',
            hostname: 'b.example.test',
            match: { path: { type: 'PathPrefix', value: '/' } },
            backends: [{ backend: 'app', weight: 1 }],
          },
        ],
        backends: backend,
      },
      'default/gw/8080': {
        service: 'default/gw/8080',
        protocol: 'http',
        explicitRoutes: true,
        routes: [
          {
            name: 'default/redirect/rule/0',
            match: { path: { type: 'PathPrefix', value: '/' } },
            filters: [{ type: 'RequestRedirect', scheme: 'https', port: 8443, statusCode: 301 }],
            backends: [],
          },
        ],
        backends: {},
      },
    },
    gateway: {
      name: 'default/gw',
      ports: [
        {
          port: 8443,
          protocol: 'HTTPS',
          listeners: ['a', 'b'],
          upstream: 'default/gw/8443',
          certificates: [cert('default/a', 'a.example.test', a), cert('default/b', 'b.example.test', certB)],
        },
        { port: 8080, protocol: 'HTTP', listeners: ['http'], upstream: 'default/gw/8080' },
      ],
    },
  };
}

before(async () => {
  app = await listenHttp((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  inbound = await startInbound('app', 'default', app.port, 'http', { meshServices: ['app', 'gw'] });
  ca = await makeLocalCa('test CA');
  certA = await issueServerCertificate(ca, { dnsNames: ['a.example.test'] });
  certB = await issueServerCertificate(ca, { dnsNames: ['b.example.test'] });
  gw = new Sidecar({
    service: 'gw',
    version: 'default',
    id: 'gw-0',
    kind: 'gateway',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
    gatewayListen: {
      ports: new Map([
        [8443, 0],
        [8080, 0],
      ]),
    },
  });
  await gw.start();
  gw.apply(snapshot(1, certA));
  await gw.whenGatewayApplied();
  httpsPort = gw.gatewayAddresses()['8443']!.port;
  httpPort = gw.gatewayAddresses()['8080']!.port;
});

after(async () => {
  await gw.close();
  await inbound.close();
  await closeServer(app.server);
});

/** One HTTPS request with `servername` as SNI and Host; the peer certificate's names and the answer. */
function get(
  servername: string,
  path = '/',
  headers: Record<string, string> = {},
  agent?: https.Agent,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: httpsPort, path, servername, ca: ca.cert, headers: { host: servername, ...headers }, agent: agent ?? false },
      (res) => {
        const subject = (res.socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? '';
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, subject: String(subject) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Writes `bytes` to a port and reads until the server closes (or 5 s). */
function raw(port: number, bytes: Buffer | string): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closed: false });
    }, 5000);
    s.on('data', (c) => (text += c.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
  });
}

test('HTTPS: the SNI picks the certificate of the listener whose hostname it names', async () => {
  const a = await get('a.example.test');
  assert.equal(a.status, 200);
  assert.equal(a.subject, 'a.example.test');
  const b = await get('b.example.test');
  assert.equal(b.status, 200);
  assert.equal(b.subject, 'b.example.test');
});

test('the gateway replaces the forwarding headers a client sends and makes an x-request-id when there is none', async () => {
  const r = await get('a.example.test', '/', { 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-forwarded-proto': 'http' });
  const seen = JSON.parse(r.body) as Record<string, string>;
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'https');
  assert.equal(seen.forwarded, 'for=127.0.0.1;proto=https');
  assert.match(seen['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  const kept = JSON.parse((await get('a.example.test', '/', { 'x-request-id': 'abc-123' })).body) as Record<string, string>;
  assert.equal(kept['x-request-id'], 'abc-123');
});

test('ALPN h2: an HTTP/2 client over TLS is served by the same routes', async () => {
  const session = http2.connect(`https://a.example.test:${httpsPort}`, {
    ca: ca.cert,
    servername: 'a.example.test',
    host: '127.0.0.1',
    port: httpsPort,
  } as http2.SecureClientSessionOptions & { host: string; port: number });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':authority': 'a.example.test' });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(status, 200);
    assert.equal((session.socket as tls.TLSSocket).alpnProtocol, 'h2');
  } finally {
    session.close();
  }
});

test('an SNI no listener takes is refused in the handshake, and the gateway serves on', async () => {
  await assert.rejects(get('c.example.test'), (err: NodeJS.ErrnoException) => /alert|socket hang up|ECONNRESET|handshake/i.test(`${err.code} ${err.message}`));
  assert.equal((await get('a.example.test')).status, 200);
});

test('plain HTTP on the HTTPS port is answered 400 http-on-https-port and closed', async () => {
  const r = await raw(httpsPort, 'GET / HTTP/1.1\r\nhost: a.example.test\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 400 /);
  assert.match(r.text, /trellis-error: http-on-https-port/);
  assert.ok(r.closed);
});

test('random bytes, and a TLS record header followed by junk, are refused without harm', async () => {
  for (let i = 0; i < 5; i++) {
    // A handshake record whose length is right and whose content is junk (OpenSSL reads it whole, then refuses it).
    const r = await raw(httpsPort, Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00]), randomBytes(256)]));
    assert.ok(r.closed, 'a bad client hello is closed');
    await raw(httpsPort, randomBytes(64));
  }
  assert.equal((await get('b.example.test')).status, 200);
});

test('an oversized request head over TLS is answered 431', async () => {
  const r = await get('a.example.test', '/', { 'x-big': 'x'.repeat(20_000) }).catch((err: Error) => ({ status: -1, body: err.message }));
  assert.equal(r.status, 431);
});

test('the HTTP port redirects to HTTPS (RequestRedirect on its route), keeping path and query', async () => {
  const r = await new Promise<http.IncomingMessage>((resolve, reject) =>
    http.get({ host: '127.0.0.1', port: httpPort, path: '/shop?x=1', headers: { host: 'a.example.test' }, agent: false }, resolve).on('error', reject),
  );
  r.resume();
  assert.equal(r.statusCode, 301);
  assert.equal(r.headers.location, 'https://a.example.test:8443/shop?x=1');
});

test('a new certificate is served to new connections; a kept-alive connection goes on undisturbed', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await get('a.example.test', '/', {}, agent);
    const serialBefore = new X509Certificate(certA.cert).serialNumber;
    const renewed = await issueServerCertificate(ca, { dnsNames: ['a.example.test'] });
    gw.apply(snapshot(2, renewed));
    await gw.whenGatewayApplied();
    // The kept-alive connection still answers (it keeps the context of its handshake).
    const again = await get('a.example.test', '/', {}, agent);
    assert.equal(again.status, 200);
    assert.equal(first.status, 200);
    const fresh = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'a.example.test', ca: ca.cert }, () => {
        resolve(s.getPeerX509Certificate()?.serialNumber ?? '');
        s.destroy();
      });
      s.on('error', reject);
    });
    assert.notEqual(fresh, serialBefore);
    assert.equal(fresh, new X509Certificate(renewed.cert).serialNumber);
  } finally {
    agent.destroy();
    gw.apply(snapshot(3, certA));
    await gw.whenGatewayApplied();
  }
});

test('a snapshot with a certificate that does not load is refused, and the one in force stays', async () => {
  const bad = snapshot(4, { cert: certA.cert, key: certB.key });
  assert.throws(() => gw.apply(bad), /certificate default\/a can't be used/);
  assert.equal((await get('a.example.test')).status, 200);
});

test('slow clients: a TLS client that never finishes its handshake, and one that sends half a head, are closed', async () => {
  gw.apply(snapshot(5, certA, { requestHeaderTimeoutMs: 300 }));
  await gw.whenGatewayApplied();
  try {
    // Silent after connecting: the first-byte wait closes it.
    const silent = net.connect(httpsPort, '127.0.0.1');
    silent.on('error', () => undefined);
    let silentClosed = false;
    silent.on('close', () => (silentClosed = true));
    // Half a head over TLS, then nothing.
    const slow = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'a.example.test', ca: ca.cert });
    slow.on('error', () => undefined);
    let slowText = '';
    let slowClosed = false;
    slow.on('secureConnect', () => slow.write('GET / HTTP/1.1\r\nhost: a.example.test\r\nx-a: 1\r\n'));
    slow.on('data', (c: Buffer) => (slowText += c.toString('latin1')));
    slow.on('close', () => (slowClosed = true));
    await eventually(() => silentClosed && slowClosed, { what: 'the slow clients closed' });
    assert.match(slowText, /^HTTP\/1\.1 408 /);
  } finally {
    gw.apply(snapshot(6, certA));
    await gw.whenGatewayApplied();
  }
});
