// `trellis up` with TCP and TLS ExternalServices behind the egress gateway: a service lists
// them as upstreams, its sidecar sends the bytes to the gateway over mutual TLS whose SNI
// names the ExternalService (`outbound_.<port>_._.<name>`), and the gateway connects out:
// plaintext to a loopback TCP echo, TLS it originates to a loopback TLS echo (SNI and CA
// checked), the client's own TLS to a declared host. Faults: a host that is down, a server
// whose certificate the CA bundle does not sign, a TLS client naming an undeclared host
// (REGISTRY_ONLY): each closes the client's connection, and is counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let mesh: RunningMesh | undefined;
const servers: net.Server[] = [];
let caPem: string;

/** A loopback server that answers each connection's first chunk with `<tag>:<servername>:<chunk>`. */
async function echo(server: net.Server, tag: string): Promise<number> {
  const on = server instanceof tls.Server ? 'secureConnection' : 'connection';
  server.on(on, (s: net.Socket) => {
    s.on('error', () => s.destroy());
    s.on('data', (c: Buffer) => s.write(`${tag}:${String((s as tls.TLSSocket).servername ?? '-')}:${c.toString()}`));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** Connects to `port`, sends `text` (over TLS when `servername` is given) and resolves what came back before the close ('' when closed first). */
function exchange(port: number, text: string, servername?: string): Promise<string> {
  return new Promise((resolve) => {
    const s = servername === undefined ? net.connect({ host: '127.0.0.1', port }) : tls.connect({ host: '127.0.0.1', port, servername, ca: caPem });
    let got = '';
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.on(servername === undefined ? 'connect' : 'secureConnect', () => s.write(text));
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-e2e-egress-tcp-'));
  const ca = await makeLocalCa('e2e external ca');
  const other = await makeLocalCa('e2e other ca');
  caPem = ca.cert;
  const leaf = await issueServerCertificate(ca, { dnsNames: ['db.example.test', 'web.example.test', 'other.example.test'] });
  const otherLeaf = await issueServerCertificate(other, { dnsNames: ['bad.example.test'] });
  const plain = await echo(net.createServer(), 'plain');
  const secure = await echo(tls.createServer({ cert: leaf.cert, key: leaf.key }), 'tls');
  // The same server as securedb's: two ExternalServices at one address, one whose TLS the
  // gateway originates and one whose TLS is the client's own (origination is keyed by the ExternalService).
  const web = secure;
  const wrongCa = await echo(tls.createServer({ cert: otherLeaf.cert, key: otherLeaf.key }), 'bad');
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const downPort = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  const external = (name: string, host: string, protocol: string, port: number, extra = ''): string => `---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ${name} }
spec:
  hosts: [${host}]
  ports: [{ number: 5432, protocol: ${protocol} }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${port} }]
${extra}`;
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: egress-tcp }
spec:
  services:
    - { name: client, upstreams: [db, securedb, web, down, badca] }
  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }
  proxyLimits: { tcpConnectTimeout: 2s }
${external('db', 'db.internal.test', 'TCP', plain)}${external('securedb', 'db.example.test', 'TCP', secure, '  tls: { caFile: ca.pem }\n')}${external('web', 'web.example.test', 'TLS', web)}${external('down', 'down.example.test', 'TCP', downPort)}${external('badca', 'bad.example.test', 'TCP', wrongCa, '  tls: { caFile: ca.pem }\n')}`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
});

after(async () => {
  await stopMesh(mesh, dir);
  for (const s of servers) {
    await new Promise((r) => s.close(r));
  }
});

function upstreamPort(name: string): number {
  const client = mesh!.state.instances.find((i) => i.service === 'client')!;
  const at = client.env[`TRELLIS_UPSTREAM_${name.toUpperCase()}`];
  assert.ok(at !== undefined, `the client has a listener for ${name} (${JSON.stringify(client.env)})`);
  return Number(at.split(':')[1]);
}

async function gatewayMetrics(): Promise<string> {
  const gw = mesh!.state.egressGateway!;
  return (await fetch(`http://${gw.admin.host}:${gw.admin.port}/metrics`)).text();
}

test('a TCP ExternalService listed as an upstream is reached through the egress gateway', async () => {
  // The gateway registers with the control plane as it comes up; until then the connection closes.
  const got = await eventually(async () => (await exchange(upstreamPort('db'), 'hello')) || false, {
    what: 'bytes through the egress gateway',
    timeoutMs: 20_000,
  });
  assert.equal(got, 'plain:-:hello');
  assert.match(await gatewayMetrics(), /trellis_tcp_connections_total\{[^}]*destination="db"[^}]*\} [1-9]/);
});

test('the gateway originates TLS on a TCP ExternalService, with its SNI, against its CA bundle', async () => {
  const got = await eventually(async () => (await exchange(upstreamPort('securedb'), 'select 1')) || false, {
    what: 'TLS originated at the gateway',
    timeoutMs: 20_000,
  });
  assert.equal(got, 'tls:db.example.test:select 1');
});

test('a TLS ExternalService: a declared SNI passes, an undeclared one is refused and counted (REGISTRY_ONLY)', async () => {
  const got = await eventually(async () => (await exchange(upstreamPort('web'), 'ping', 'web.example.test')) || false, {
    what: 'the client TLS through the gateway',
    timeoutMs: 20_000,
  });
  assert.equal(got, 'tls:web.example.test:ping');
  assert.equal(await exchange(upstreamPort('web'), 'ping', 'other.example.test'), '');
  const client = mesh!.state.instances.find((i) => i.service === 'client')!;
  const metrics = await (await fetch(`http://${client.admin.host}:${client.admin.port}/metrics`)).text();
  assert.match(metrics, /trellis_egress_refused_total\{protocol="tcp"[^}]*\} [1-9]/);
});

test('a host that is down, and a server the CA bundle does not sign: the connection closes, counted at the gateway', async () => {
  assert.equal(await exchange(upstreamPort('down'), 'x'), '');
  assert.equal(await exchange(upstreamPort('badca'), 'x'), '');
  await eventually(
    async () => {
      const m = await gatewayMetrics();
      return (
        /trellis_tcp_connect_failures_total\{[^}]*destination="down"[^}]*reason="connect"[^}]*\} [1-9]/.test(m) &&
        /trellis_tcp_connect_failures_total\{[^}]*destination="badca"[^}]*reason="tls"[^}]*\} [1-9]/.test(m)
      );
    },
    { what: 'the failures counted', timeoutMs: 10_000 },
  );
  // The mesh is still up and serving.
  assert.equal(await exchange(upstreamPort('db'), 'again'), 'plain:-:again');
});
