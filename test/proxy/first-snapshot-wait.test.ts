// Connections a sidecar accepts before its first snapshot wait for it, then are served:
// HTTP/1.1 and HTTP/2 alike (the bytes sent meanwhile are not lost). A snapshot that asks
// for mutual TLS is not enough: they also wait for the certificate (a restarted sidecar
// gets its snapshot first, its certificate a CSR round trip later).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';
import { giveIdentity, withPeerMtls } from '../helpers/test-identity.js';
import { eventually } from '../helpers/eventually.js';

let app: http2.Http2Server;
let appPort: number;

before(async () => {
  app = http2.createServer((req, res) => res.end(`h2 ${req.url}`));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as net.AddressInfo).port;
});

after(async () => {
  await new Promise<void>((r) => app.close(() => r()));
});

async function unconfigured(): Promise<Sidecar> {
  const s = new Sidecar({
    service: 'svc',
    version: 'v1',
    id: 'svc-v1-early',
    kind: 'sidecar',
    control: NO_CONTROL,
    app: { host: '127.0.0.1', port: appPort },
    inbound: { host: '127.0.0.1', port: 0 },
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  await s.start();
  return s;
}

test('an HTTP/2 request sent before the first snapshot is answered once it arrives', async () => {
  const s = await unconfigured();
  const session = http2.connect(`http://127.0.0.1:${s.addresses.inbound!.port}`);
  session.on('error', () => {});
  try {
    const answer = new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/early' });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        text += c;
      });
      req.on('end', () => resolve(text));
      req.on('error', reject);
    });
    // The connection is held, its preface and request unread in its socket, until the snapshot.
    await eventually(() => s.waitingForSnapshot === 1, { what: 'the sidecar to hold the connection' });
    s.apply({ version: 1, service: 'svc', inboundProtocol: 'http', upstreams: {} });
    assert.equal(await answer, 'h2 /early');
  } finally {
    session.destroy();
    await s.close();
  }
});

test('an HTTP/1.1 request sent before the first snapshot gets a response once it arrives', async () => {
  const s = await unconfigured();
  const sock = net.connect(s.addresses.inbound!.port, '127.0.0.1');
  try {
    const got = new Promise<string>((resolve) => {
      let out = '';
      sock.on('data', (c: Buffer) => {
        out += c.toString('latin1');
        if (out.includes('\r\n\r\n')) resolve(out);
      });
    });
    sock.write('GET /early HTTP/1.1\r\nHost: svc\r\n\r\n');
    // As above: the request is at the sidecar, unread, before the snapshot.
    await eventually(() => s.waitingForSnapshot === 1, { what: 'the sidecar to hold the connection' });
    s.apply({ version: 1, service: 'svc', inboundProtocol: 'http', upstreams: {} });
    // The app speaks only HTTP/2, so this HTTP/1.1 request ends in the proxy's own answer: what
    // matters here is that it comes at all.
    assert.match(await got, /^HTTP\/1\.1 \d{3} /);
  } finally {
    sock.destroy();
    await s.close();
  }
});

test('a connection accepted after a snapshot that needs mutual TLS, before the certificate, waits for it', async () => {
  const { server: backendApp, port: backendAppPort } = await listenHttp((_req, res) => res.end('from backend'));
  const backend = await startInbound('backend', 'v1', backendAppPort);
  const caller = new Sidecar({
    service: 'web',
    version: 'v1',
    id: 'web-restarted',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [{ service: 'backend', listen: { host: '127.0.0.1', port: 0 } }],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  await caller.start();
  const sock = net.connect(caller.addresses.upstreams.backend!.port, '127.0.0.1');
  try {
    caller.apply({
      version: 1,
      service: 'web',
      inboundProtocol: 'http',
      meshServices: ['backend', 'web'],
      upstreams: withPeerMtls({
        backend: {
          service: 'backend',
          protocol: 'http',
          routes: [{ name: 'default/backend/rule/0', match: {}, backends: [{ backend: 'backend', weight: 1 }] }],
          backends: { backend: { name: 'backend', endpoints: [{ id: 'b1', host: '127.0.0.1', port: backend.addresses.inbound!.port, version: 'v1' }] } },
        },
      }),
    });
    const got = new Promise<string>((resolve) => {
      let out = '';
      sock.on('data', (c: Buffer) => {
        out += c.toString('latin1');
        if (out.includes('from backend') || out.includes('trellis-error')) resolve(out);
      });
    });
    sock.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    // Configured but without a certificate: before the fix this answered 502 at once (mutual TLS needs a workload certificate).
    await eventually(() => caller.waitingForSnapshot === 1, { what: 'the sidecar to hold the connection until its certificate' });
    await giveIdentity(caller, 'web');
    assert.match(await got, /^HTTP\/1\.1 200 [\s\S]*from backend/);
  } finally {
    sock.destroy();
    await caller.close();
    await backend.close();
    await closeServer(backendApp);
  }
});
