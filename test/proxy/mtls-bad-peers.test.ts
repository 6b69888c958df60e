// Mutual TLS between real sidecars against peers that must be refused: on the inbound
// side a client that is plaintext, expired, not yet valid, self-signed, of another trust
// domain or without a certificate; on the outbound side a server presenting another
// service's identity, an expired certificate, or one whose root left the bundle after a
// rotation. Each is refused, counted in trellis_tls_handshake_failures_total with its
// reason, and logged. Then renewal and root rotation under steady load fail no request.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { makeLeaf, makeRoot, type TestRoot } from '../helpers/test-pki.js';
import { testSpiffeId } from '../helpers/test-identity.js';
import type { TlsMaterial } from '../../src/proxy/tls/workload-identity.js';

const DAY = 86_400_000;
const API = testSpiffeId('api');
const WEB = testSpiffeId('web');

let app: http.Server;
let appPort: number;
let rootA: TestRoot;
let rootB: TestRoot;
const started: Sidecar[] = [];

before(async () => {
  ({ server: app, port: appPort } = await listenHttp((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ source: req.headers['trellis-source'] ?? null }));
  }));
  rootA = await makeRoot('mesh root A');
  rootB = await makeRoot('mesh root B');
});

after(async () => {
  for (const s of started) await s.close();
  await closeServer(app);
});

/** A STRICT inbound sidecar of `api` whose certificate is `leaf` (default: a good one from root A). */
async function strictApi(leaf?: { key: string; certificate: Parameters<Sidecar['identity']['setCertificate']>[1] }): Promise<Sidecar> {
  const s = await startInbound('api', 'v1', appPort, 'http', { mtls: 'STRICT', meshServices: ['api', 'web'] });
  started.push(s);
  const l = leaf ?? (await makeLeaf({ spiffeId: API, root: rootA, trust: [rootA] }));
  s.identity.setCertificate(l.key, l.certificate);
  return s;
}

async function failures(s: Sidecar, direction: string, reason: string): Promise<number> {
  const text = await s.metrics.text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('trellis_tls_handshake_failures_total{') && l.includes(`direction="${direction}"`) && l.includes(`reason="${reason}"`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

/** A raw client at `port`: 'ok' when a request over it is answered, 'refused' when the connection closes first. */
function tryTlsClient(port: number, material: TlsMaterial | undefined): Promise<'ok' | 'refused'> {
  return new Promise((resolve) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      ...(material !== undefined ? { key: material.key, cert: material.cert } : {}),
      ca: [rootA.pem, rootB.pem],
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['http/1.1'],
    });
    let data = '';
    const t = setTimeout(() => sock.destroy(), 3000);
    sock.on('secureConnect', () => sock.write('GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n'));
    sock.on('data', (c: Buffer) => {
      data += c.toString('latin1');
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(t);
      resolve(data.startsWith('HTTP/1.1 200') ? 'ok' : 'refused');
    });
  });
}

test('inbound STRICT: a client with a good certificate is served; bad clients are refused, each with its reason', async () => {
  const api = await strictApi();
  const port = api.addresses.inbound!.port;
  const good = await makeLeaf({ spiffeId: WEB, root: rootA, trust: [rootA] });
  assert.equal(await tryTlsClient(port, good.material), 'ok');

  const cases: { name: string; reason: string; material: () => Promise<TlsMaterial | undefined> }[] = [
    {
      name: 'expired',
      reason: 'expired',
      material: async () =>
        (await makeLeaf({ spiffeId: WEB, root: rootA, trust: [rootA], notBefore: Date.now() - 2 * DAY, notAfter: Date.now() - DAY })).material,
    },
    {
      name: 'not yet valid',
      reason: 'not-yet-valid',
      material: async () =>
        (await makeLeaf({ spiffeId: WEB, root: rootA, trust: [rootA], notBefore: Date.now() + DAY, notAfter: Date.now() + 2 * DAY })).material,
    },
    { name: 'self-signed', reason: 'untrusted', material: async () => (await makeLeaf({ spiffeId: WEB, trust: [rootA] })).material },
    { name: 'another CA', reason: 'untrusted', material: async () => (await makeLeaf({ spiffeId: WEB, root: rootB, trust: [rootA] })).material },
    {
      name: 'wrong trust domain',
      reason: 'wrong-trust-domain',
      material: async () => (await makeLeaf({ spiffeId: 'spiffe://evil.example/ns/default/sa/web', root: rootA, trust: [rootA] })).material,
    },
    { name: 'no SPIFFE ID', reason: 'wrong-identity', material: async () => (await makeLeaf({ root: rootA, trust: [rootA] })).material },
    { name: 'no certificate', reason: 'no-certificate', material: async () => undefined },
  ];
  for (const c of cases) {
    const before = await failures(api, 'inbound', c.reason);
    assert.equal(await tryTlsClient(port, await c.material()), 'refused', c.name);
    assert.equal(await failures(api, 'inbound', c.reason), before + 1, `${c.name}: counted as ${c.reason}`);
  }
});

test('inbound STRICT: a plaintext client (HTTP, or raw bytes as psql and redis-cli send) is closed, counted and logged', async () => {
  const api = await startInbound('api', 'v1', appPort, 'tcp', { mtls: 'STRICT' });
  started.push(api);
  const port = api.addresses.inbound!.port;
  for (const bytes of ['GET / HTTP/1.1\r\nhost: api\r\n\r\n', '*1\r\n$4\r\nPING\r\n', Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])]) {
    const got = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
      let d = '';
      s.on('data', (c: Buffer) => (d += c.toString('latin1')));
      s.on('error', () => {});
      s.on('close', () => resolve(d));
    });
    assert.equal(got, '', 'closed without an answer');
  }
  assert.equal(await failures(api, 'inbound', 'plaintext'), 3);
});

/** An outbound sidecar of `web` (certificate from root A, trusting `trust`) calling `api` at `inbound`. */
async function webTo(inbound: Sidecar, trust: TestRoot[] = [rootA]): Promise<Sidecar> {
  const port = inbound.addresses.inbound!.port;
  const upstream: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [],
    backends: { api: { name: 'api', endpoints: [{ id: 'api-0', host: '127.0.0.1', port, version: 'v1' }], mtls: { identities: [API] } } },
  };
  const web = await startOutbound('web', { api: upstream });
  started.push(web);
  const leaf = await makeLeaf({ spiffeId: WEB, root: rootA, trust });
  web.identity.setCertificate(leaf.key, leaf.certificate);
  return web;
}

test('outbound: the caller is the certificate, and the app is told it', async () => {
  const api = await strictApi();
  const web = await webTo(api);
  const r = await get(web.addresses.upstreams.api!.port, '/', { 'trellis-source': 'evil' });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { source: 'web' });
});

test('outbound: a server presenting another identity, an expired certificate, or a root no longer trusted is refused', async () => {
  const cases: { name: string; reason: string; leaf: () => ReturnType<typeof makeLeaf>; trust?: TestRoot[] }[] = [
    { name: "another service's identity", reason: 'wrong-identity', leaf: () => makeLeaf({ spiffeId: testSpiffeId('billing'), root: rootA, trust: [rootA] }) },
    {
      name: 'expired',
      reason: 'expired',
      leaf: () => makeLeaf({ spiffeId: API, root: rootA, trust: [rootA], notBefore: Date.now() - 2 * DAY, notAfter: Date.now() - DAY }),
    },
    // After a rotation from A to B, A left the caller's bundle; the server still shows A's certificate.
    { name: 'root removed after rotation', reason: 'untrusted', leaf: () => makeLeaf({ spiffeId: API, root: rootA, trust: [rootA, rootB] }), trust: [rootB] },
  ];
  for (const c of cases) {
    const api = await strictApi(await c.leaf());
    const web = await webTo(api, c.trust);
    const r = await get(web.addresses.upstreams.api!.port, '/');
    assert.ok(r.status === 502 || r.status === 503, `${c.name}: ${r.status} ${r.body}`);
    assert.ok((await failures(web, 'outbound', c.reason)) >= 1, `${c.name}: counted as ${c.reason}`);
  }
});

test('renewal and trust-root rotation under steady load fail no request', async () => {
  const api = await strictApi();
  const web = await webTo(api);
  const port = web.addresses.upstreams.api!.port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let ok = 0;
  const failed: string[] = [];
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const r = await get(port, '/', {}, agent);
        if (r.status === 200) ok++;
        else failed.push(`${r.status} ${r.body}`);
      } catch (err) {
        failed.push(String(err));
      }
    }
  };
  const loops = [loop(), loop(), loop(), loop()];
  const settle = async (): Promise<void> => {
    const at = ok;
    while (ok < at + 50) await new Promise((r) => setTimeout(r, 5));
  };
  try {
    await settle();
    // Renewal: new keys and certificates from the same root, while connections are open.
    for (const [s, id] of [
      [api, API],
      [web, WEB],
    ] as const) {
      const l = await makeLeaf({ spiffeId: id, root: rootA, trust: [rootA] });
      s.identity.setCertificate(l.key, l.certificate);
    }
    await settle();
    // Rotation: B joins the bundles, then both sides get B's certificates, then A leaves.
    for (const s of [api, web]) s.identity.setTrustBundle([rootA.pem, rootB.pem]);
    await settle();
    for (const [s, id] of [
      [api, API],
      [web, WEB],
    ] as const) {
      const l = await makeLeaf({ spiffeId: id, root: rootB, trust: [rootA, rootB] });
      s.identity.setCertificate(l.key, l.certificate);
    }
    await settle();
    for (const s of [api, web]) s.identity.setTrustBundle([rootB.pem]);
    await settle();
  } finally {
    running = false;
    await Promise.all(loops);
    agent.destroy();
  }
  assert.deepEqual(failed, []);
  assert.ok(ok >= 250, `${ok} requests`);
  // New handshakes use root B alone: a fresh caller with B's certificate is served, one with A's is refused.
  const fresh = await webTo(api, [rootB]);
  const leafB = await makeLeaf({ spiffeId: WEB, root: rootB, trust: [rootB] });
  fresh.identity.setCertificate(leafB.key, leafB.certificate);
  assert.equal((await get(fresh.addresses.upstreams.api!.port, '/')).status, 200);
  assert.equal(await tryTlsClient(api.addresses.inbound!.port, (await makeLeaf({ spiffeId: WEB, root: rootA, trust: [rootA] })).material), 'refused');
});
