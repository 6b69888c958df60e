// A Gateway TLS listener in Passthrough mode: TLS the gateway does not terminate, routed
// by the SNI of the ClientHello (TLSRoutes) to a backend that terminates it itself (here,
// loopback TLS servers behind STRICT sidecars: the gateway wraps the client's TLS in its
// own mutual TLS to the sidecar). The client sees the backend's certificate, never the
// gateway's; two names reach two backends; a name no route takes, bytes that are no
// ClientHello, and a client that never finishes saying hello are closed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import type { Snapshot } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { readClientHello } from '../../src/proxy/gateway/client-hello.js';
import { issueServerCertificate, makeLocalCa, type PemPair } from '../../src/security/local-tls.js';
import { closeServer, metricsText, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';
import { giveIdentity, withPeerMtls } from '../helpers/test-identity.js';
import { eventually } from '../helpers/eventually.js';

let ca: PemPair;
const servers: tls.Server[] = [];
const inbound: Sidecar[] = [];
let gw: Sidecar;
let port = 0;

/** A loopback TLS server for `name` that greets each client with its own name after the handshake. */
async function tlsBackend(name: string): Promise<number> {
  const cert = await issueServerCertificate(ca, { dnsNames: [name] });
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (socket) => {
    socket.on('error', () => undefined);
    socket.end(`hello from ${name}\n`);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

function snapshot(endpoints: { a: number; b: number }): Snapshot {
  const backend = (service: string, p: number) => ({ name: service, endpoints: [{ id: `${service}-0`, host: '127.0.0.1', port: p, version: 'default' }] });
  return {
    version: 1,
    service: 'gw',
    inboundProtocol: 'http',
    meshServices: ['gw', 'pass-a', 'pass-b'],
    upstreams: withPeerMtls({
      'default/gw/9443': {
        service: 'default/gw/9443',
        protocol: 'tcp',
        explicitRoutes: true,
        routes: [
          { name: 'default/a/rule/0', hostname: 'a.pass.test', match: {}, backends: [{ backend: 'pass-a', weight: 1 }] },
          { name: 'default/b/rule/0', hostname: '*.b.pass.test', match: {}, backends: [{ backend: 'pass-b', weight: 1 }] },
        ],
        backends: { 'pass-a': backend('pass-a', endpoints.a), 'pass-b': backend('pass-b', endpoints.b) },
      },
    }),
    gateway: { name: 'default/gw', ports: [{ port: 9443, protocol: 'TLS', listeners: ['pass'], upstream: 'default/gw/9443' }] },
    limits: { requestHeaderTimeoutMs: 1500 },
  } as Snapshot;
}

before(async () => {
  ca = await makeLocalCa('passthrough test CA');
  const a = await tlsBackend('a.pass.test');
  const b = await tlsBackend('x.b.pass.test');
  // STRICT sidecars in front of the TLS servers: only mutual TLS from a mesh identity gets in.
  inbound.push(await startInbound('pass-a', 'default', a, 'tcp', { meshServices: ['gw', 'pass-a'], mtls: 'STRICT' }));
  inbound.push(await startInbound('pass-b', 'default', b, 'tcp', { meshServices: ['gw', 'pass-b'], mtls: 'STRICT' }));
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
    gatewayListen: { ports: new Map([[9443, 0]]) },
  });
  await giveIdentity(gw, 'gw');
  await gw.start();
  gw.apply(snapshot({ a: inbound[0]!.addresses.inbound!.port, b: inbound[1]!.addresses.inbound!.port }));
  await gw.whenGatewayApplied();
  port = gw.gatewayAddresses()['9443']!.port;
});

after(async () => {
  await gw?.close();
  for (const s of inbound) await s.close();
  for (const s of servers) await closeServer(s);
});

/** A TLS client for `servername` that trusts only the backends' CA; the certificate it saw and what it read. */
function connect(servername: string | undefined): Promise<{ subject: string; text: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), ca: ca.cert, checkServerIdentity: () => undefined },
      () => {
        const subject = String(s.getPeerCertificate().subject?.CN ?? '');
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (c: string) => (text += c));
        s.on('end', () => resolve({ subject, text }));
      },
    );
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timed out')));
  });
}

/** Writes `bytes` and waits for the gateway to close the connection (or 5 s: not closed). */
function closedAfter(bytes: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      if (bytes !== undefined) s.write(bytes);
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 5000);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

test('the SNI picks the TLSRoute; the client gets the backend’s own certificate (not terminated at the gateway)', async () => {
  const a = await connect('a.pass.test');
  assert.equal(a.subject, 'a.pass.test');
  assert.equal(a.text, 'hello from a.pass.test\n');
  const b = await connect('x.b.pass.test');
  assert.equal(b.subject, 'x.b.pass.test');
  assert.equal(b.text, 'hello from x.b.pass.test\n');
});

test('an SNI no TLSRoute takes, and a client without SNI (no route without a hostname), are closed and counted', async () => {
  await assert.rejects(connect('c.pass.test'), /ECONNRESET|socket hang up|disconnected/i);
  await assert.rejects(connect(undefined), /ECONNRESET|socket hang up|disconnected/i);
  await eventually(async () =>
    assert.match(await metricsText(gw), /trellis_proxy_connections_refused_total\{[^}]*listener="gateway:9443"[^}]*reason="unknown-sni"[^}]*\} [2-9]/),
  );
  assert.equal((await connect('a.pass.test')).subject, 'a.pass.test', 'the gateway serves on');
});

test('bytes that are no ClientHello, a bad record, and a client that never finishes its hello are closed', async () => {
  assert.equal(await closedAfter(Buffer.from('GET / HTTP/1.1\r\nHost: a.pass.test\r\n\r\n')), true);
  assert.equal(await closedAfter(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01])), true, 'a record longer than TLS allows');
  assert.equal(await closedAfter(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00])), true, 'half a hello, then silence (head timeout)');
  assert.equal(await closedAfter(undefined), true, 'nothing at all (head timeout)');
  assert.equal((await connect('a.pass.test')).subject, 'a.pass.test', 'the gateway serves on');
});

test('the ClientHello reader: SNI from real hellos split anywhere, nothing thrown on truncations or random bytes', async () => {
  // A real ClientHello, captured from Node's own TLS client.
  const hello = await new Promise<Buffer>((resolve) => {
    const server = net.createServer((s) => {
      s.once('data', (c: Buffer) => {
        resolve(c);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername: 'Split.Example.Test.' });
      c.on('error', () => undefined);
    });
  });
  assert.deepEqual(readClientHello(hello), { kind: 'hello', sni: 'split.example.test' });
  for (let cut = 0; cut < hello.length; cut++) assert.deepEqual(readClientHello(hello.subarray(0, cut)), { kind: 'more' }, `cut at ${cut}`);
  // The same hello in two records (the handshake message split between them).
  const body = hello.subarray(5);
  const record = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b]);
  const two = Buffer.concat([record(body.subarray(0, 40)), record(body.subarray(40))]);
  assert.deepEqual(readClientHello(two), { kind: 'hello', sni: 'split.example.test' });
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(hello);
    for (let k = 0; k < 4; k++) junk[Math.floor(Math.random() * junk.length)] = Math.floor(Math.random() * 256);
    const r = readClientHello(junk);
    assert.ok(r.kind === 'hello' || r.kind === 'invalid' || r.kind === 'more');
  }
});
