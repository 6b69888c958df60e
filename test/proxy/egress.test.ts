// Egress: ExternalServices reached through a sidecar's HTTP proxy listener (STATIC
// resolution to loopback servers), routes with retries and timeouts on them, the
// REGISTRY_ONLY refusal (403 + metric + log, TCP closed) with hostile Host headers, TLS
// originated to a loopback HTTPS server that checks the SNI (and a wrong CA bundle
// refused with the reason; two ExternalServices on one address each with their own SNI and
// CA, over HTTP and TCP), calls forced through an egress gateway over mutual TLS, and the
// TCP connect and idle timeouts (Mesh proxyLimits) with their metrics.
// Config is loaded from YAML and compiled by the real compiler, as the control plane does.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { loadConfig } from '../../src/config/load.js';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import type { HostPort, ProxyInfo } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';
import { loggableHost } from '../../src/proxy/egress/egress-policy.js';
import { closeServer, get, listenHttp, NO_CONTROL } from '../helpers/proxy-pair.js';
import { giveIdentity, issueFor } from '../helpers/test-identity.js';
import { DEFAULT_TRUST_DOMAIN } from '../../src/security/spiffe.js';
import { eventually } from '../helpers/eventually.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Loads `yaml` (a Mesh with service web, and what `more` adds) from a temporary folder; `files` are written beside it. */
async function load(more: string, meshSpec = '', files: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-egress-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const mesh = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services:
    - { name: web }
${meshSpec}
---
${more}`;
  await writeFile(join(dir, 'mesh.yaml'), mesh);
  const result = await loadConfig([join(dir, 'mesh.yaml')]);
  assert.deepEqual(result.problems, [], JSON.stringify(result.problems));
  return result.config!;
}

/** A started proxy of `service` (kind `kind`) with an HTTP proxy listener; `egress`: a gateway's mTLS listener. */
async function proxy(service: string, kind: 'sidecar' | 'gateway', log: string[], egress?: HostPort, upstreams: Sidecar['addresses']['upstreams'] = {}) {
  const s = new Sidecar({
    service,
    version: 'default',
    id: `${service}-0`,
    kind,
    control: NO_CONTROL,
    upstreams: Object.entries(upstreams).map(([name, listen]) => ({ service: name, listen })),
    httpProxy: { host: '127.0.0.1', port: 0 },
    ...(egress ? { egress } : {}),
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: (line) => log.push(line),
  });
  await giveIdentity(s, service);
  await s.start();
  cleanups.push(() => s.close());
  return s;
}

function infoOf(s: Sidecar, service: string, kind: 'sidecar' | 'gateway'): ProxyInfo {
  return {
    id: `${service}-0`,
    service,
    version: 'default',
    kind,
    admin: s.addresses.admin!,
    pid: process.pid,
    ...(s.addresses.inbound ? { inbound: s.addresses.inbound } : {}),
    upstreams: Object.entries(s.addresses.upstreams).map(([name, listen]) => ({ service: name, listen })),
  };
}

type Loaded = Awaited<ReturnType<typeof load>>;
function applyTo(s: Sidecar, config: Loaded, info: ProxyInfo, instances: RoutableInstance[] = [], version = 1): void {
  s.apply({ version, ...compileSnapshot({ config, instances, proxy: info }) });
}

/** A request to the HTTP proxy listener at `port` with Host `host`. */
function viaProxy(port: number, host: string, path = '/') {
  return get(port, path, { host });
}

async function metric(s: Sidecar, name: string, labels: string): Promise<number> {
  const text = await s.metrics.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Raw bytes to `port`; resolves with what came back once the server closes (or 2 s passed). */
function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(bytes));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (got += c));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
}

/** An ExternalService `name` (host `<name>.example.test`) of `protocol` on port `number`, at 127.0.0.1:`port`; `extra`: more spec lines. */
const externalAt = (name: string, protocol: 'HTTP' | 'TCP', number: number, port: number, extra = '') => `apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ${name} }
spec:
  hosts: [${name}.example.test]
  ports: [{ number: ${number}, protocol: ${protocol} }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${port} }]
${extra}`;

const externalApi = (port: number, extra = '') => `apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: api }
spec:
  hosts: [api.example.test]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${port} }]
${extra}`;

test('REGISTRY_ONLY: an undeclared host is refused 403 egress-refused, counted and logged (escaped, bounded); a declared one goes through', async () => {
  const app = await listenHttp((_req, res) => res.end('external ok'));
  cleanups.push(() => closeServer(app.server));
  const config = await load(externalApi(app.port), '  outboundTrafficPolicy: { mode: REGISTRY_ONLY }');
  const log: string[] = [];
  const web = await proxy('web', 'sidecar', log);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const port = web.addresses.httpProxy!.port;

  const ok = await viaProxy(port, 'api.example.test');
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'external ok');

  const refused = await viaProxy(port, 'evil.example.test');
  assert.equal(refused.status, 403);
  assert.equal(refused.headers['trellis-error'], 'egress-refused');
  assert.match(refused.body, /evil\.example\.test/);
  assert.equal(await metric(web, 'trellis_egress_refused_total', 'protocol="http"'), 1);
  assert.ok(
    log.some((l) => l.includes('"evil.example.test" refused')),
    log.join('\n'),
  );

  // Hostile hosts: 10 kB (bounded in the log and the answer), an IPv6 literal no instance has.
  const long = `${'a'.repeat(10_000)}.test`;
  const big = await raw(port, `GET / HTTP/1.1\r\nHost: ${long}\r\nConnection: close\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 403 /);
  assert.ok(big.length < 2000, `the answer repeats at most a bounded host (${big.length} bytes)`);
  const v6 = await viaProxy(port, '[::1]:9');
  assert.equal(v6.status, 403);
  assert.equal(v6.headers['trellis-error'], 'egress-refused');
  assert.equal(await metric(web, 'trellis_egress_refused_total', 'protocol="http"'), 3);
  const longLine = log.find((l) => l.includes('aaaa'));
  assert.ok(longLine !== undefined && longLine.length < 400, 'the logged host is bounded');
  // Control characters never reach the proxy's log raw: the parser refuses them, and the log escapes what it repeats.
  const ctl = await raw(port, 'GET / HTTP/1.1\r\nHost: a\x01b\x7f.test\r\nConnection: close\r\n\r\n');
  assert.match(ctl, /^HTTP\/1\.1 4\d\d /);
  assert.ok(!log.some((l) => /[\x00-\x08\x7f]/.test(l)), 'no raw control character in the log');
  assert.equal(loggableHost('a\x01b\x7f\u2028'), '"a\\u0001b\\u007f\\u2028"');
});

test('ALLOW_ANY (the default) keeps the answer of before: 503 unknown-service, no egress refusal counted', async () => {
  const config = await load('');
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await viaProxy(web.addresses.httpProxy!.port, 'elsewhere.example.test');
  assert.equal(r.status, 503);
  assert.equal(r.headers['trellis-error'], 'unknown-service');
  assert.equal(await metric(web, 'trellis_egress_refused_total', 'protocol="http"'), 0);
});

test('REGISTRY_ONLY: a mesh service the caller does not declare keeps its 503 unknown-service (no egress counted)', async () => {
  const config = await load('', '  outboundTrafficPolicy: { mode: REGISTRY_ONLY }'.replace('  outbound', '    - { name: other }\n  outbound'));
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await viaProxy(web.addresses.httpProxy!.port, 'other');
  assert.equal(r.status, 503);
  assert.equal(r.headers['trellis-error'], 'unknown-service');
  assert.equal(await metric(web, 'trellis_egress_refused_total', 'protocol="http"'), 0);
});

test('a TCP ExternalService: an upstream listener for it carries opaque bytes to its STATIC address', async () => {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  cleanups.push(() => closeServer(echo));
  const port = (echo.address() as net.AddressInfo).port;
  const config = await load(
    `apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ext-db }
spec:
  hosts: [db.example.test]
  ports: [{ number: 5432, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${port} }]
`,
    '  outboundTrafficPolicy: { mode: REGISTRY_ONLY }',
  );
  const web = await proxy('web', 'sidecar', [], undefined, { 'ext-db': { host: '127.0.0.1', port: 0 } });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const socket = net.connect(web.addresses.upstreams['ext-db']!.port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  let got = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (got += c));
  socket.write('hello external');
  await eventually(() => got === 'hello external', { what: 'the echo through the external TCP service' });
});

test('an HTTP ExternalService listed as an upstream: its listener routes there whatever the Host', async () => {
  const app = await listenHttp((req, res) => res.end(`via listener, host ${req.headers.host}`));
  cleanups.push(() => closeServer(app.server));
  const config = await load(externalApi(app.port));
  const web = await proxy('web', 'sidecar', [], undefined, { api: { host: '127.0.0.1', port: 0 } });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await get(web.addresses.upstreams.api!.port, '/x', { host: 'localhost' });
  assert.equal(r.status, 200, r.body);
  assert.match(r.body, /^via listener/);
});

test('resolution DNS: connections go to the first host, resolved when they open (localhost here)', async () => {
  const app = await listenHttp((req, res) => res.end(`dns ok ${req.headers.host}`));
  cleanups.push(() => closeServer(app.server));
  const config = await load(`apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: local }
spec:
  hosts: [localhost]
  ports: [{ number: 80, protocol: HTTP, targetPort: ${app.port} }]
  resolution: DNS
`);
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await viaProxy(web.addresses.httpProxy!.port, 'localhost');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, 'dns ok localhost');
});

test('REGISTRY_ONLY: a TCP upstream listener for a name nothing declares closes the connection, counted', async () => {
  const config = await load('', '  outboundTrafficPolicy: { mode: REGISTRY_ONLY }');
  const log: string[] = [];
  const web = await proxy('web', 'sidecar', log, undefined, { 'undeclared-db': { host: '127.0.0.1', port: 0 } });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const got = await raw(web.addresses.upstreams['undeclared-db']!.port, 'PING\r\n');
  assert.equal(got, '');
  assert.equal(await metric(web, 'trellis_egress_refused_total', 'protocol="tcp"'), 1);
  assert.ok(log.some((l) => l.includes('"undeclared-db"')));
});

test('an HTTPRoute on an ExternalService: its retry and timeout apply as to a mesh service', async () => {
  let calls = 0;
  const app = await listenHttp((req, res) => {
    if (req.url === '/slow') return; // never answers: the route's timeout does
    calls++;
    res.statusCode = calls === 1 ? 503 : 200;
    res.end(`attempt ${calls}`);
  });
  cleanups.push(() => closeServer(app.server));
  const route = `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api-route }
spec:
  parentRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      timeouts: { request: 300ms }
      backendRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
    - retry: { codes: [503], attempts: 2 }
      backendRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
`;
  const config = await load(externalApi(app.port) + route);
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const port = web.addresses.httpProxy!.port;
  const retried = await viaProxy(port, 'api.example.test');
  assert.equal(retried.status, 200);
  assert.equal(retried.body, 'attempt 2');
  const started = Date.now();
  const slow = await viaProxy(port, 'api.example.test', '/slow');
  assert.equal(slow.status, 504);
  assert.ok(Date.now() - started < 3000);
});

/** A loopback HTTPS server for api.example.test (certificate from its own CA) that answers with the SNI it was given. */
async function httpsApi() {
  const ca = await makeLocalCa('external test ca');
  const leaf = await issueServerCertificate(ca, { dnsNames: ['api.example.test'] });
  const server = https.createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    const sni = (req.socket as TLSSocket & { servername?: string }).servername;
    res.statusCode = sni === 'api.example.test' ? 200 : 421;
    res.end(`tls ok, sni ${String(sni)}, path ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => closeServer(server));
  const other = await makeLocalCa('some other ca');
  return { port: (server.address() as net.AddressInfo).port, ca: ca.cert, wrongCa: other.cert };
}

test('TLS origination: the app speaks plain HTTP, the sidecar opens TLS with the SNI and verifies the server against the CA bundle', async () => {
  const api = await httpsApi();
  const config = await load(externalApi(api.port, '  tls: { caFile: ca.pem }'), '', { 'ca.pem': api.ca });
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await viaProxy(web.addresses.httpProxy!.port, 'api.example.test', '/v1/x');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, 'tls ok, sni api.example.test, path /v1/x');
});

test('TLS origination with a wrong CA bundle: refused with connect-failed naming the certificate problem', async () => {
  const api = await httpsApi();
  const config = await load(externalApi(api.port, '  tls: { caFile: ca.pem }'), '', { 'ca.pem': api.wrongCa });
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const r = await viaProxy(web.addresses.httpProxy!.port, 'api.example.test');
  assert.equal(r.status, 502);
  assert.equal(r.headers['trellis-error'], 'connect-failed');
  assert.match(r.body, /certificate/i);
});

test('an egress gateway: external calls go sidecar → gateway over mutual TLS, and the gateway originates TLS (seen in its metrics)', async () => {
  const api = await httpsApi();
  const config = await load(
    externalApi(api.port, '  tls: { caFile: ca.pem }'),
    '  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }',
    {
      'ca.pem': api.ca,
    },
  );
  const gw = await proxy('egress', 'gateway', [], { host: '127.0.0.1', port: 0 });
  const gwInfo = infoOf(gw, 'egress', 'gateway');
  applyTo(gw, config, gwInfo);
  const web = await proxy('web', 'sidecar', []);
  const instances: RoutableInstance[] = [{ id: 'egress-0', service: 'egress', version: 'default', inbound: gw.addresses.inbound!, status: 'healthy' }];
  applyTo(web, config, infoOf(web, 'web', 'sidecar'), instances);
  const snapshotBackend = web.snapshot!.upstreams.api!.backends.api!;
  assert.deepEqual(
    snapshotBackend.endpoints.map((e) => e.port),
    [gw.addresses.inbound!.port],
    'the sidecar sends external calls to the gateway',
  );
  assert.equal(snapshotBackend.originateTls, undefined, 'the sidecar carries no CA bundle');
  const r = await viaProxy(web.addresses.httpProxy!.port, 'api.example.test', '/through');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, 'tls ok, sni api.example.test, path /through');
  await eventually(async () => (await metric(gw, 'trellis_http_requests_total', 'destination="api"')) >= 1, { what: "the gateway's request metric" });
  // Plaintext straight to the gateway's listener is refused: only mesh workloads send through it.
  const plain = await raw(gw.addresses.inbound!.port, 'GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n');
  assert.doesNotMatch(plain, /tls ok/);
});

/** Opens mutual TLS to the egress gateway at `port` as workload `service`, with `servername`; resolves what came back for `text` ('' when closed first). */
async function tunnel(port: number, servername: string, text: string): Promise<string> {
  const { key, certificate } = await issueFor({ trustDomain: DEFAULT_TRUST_DOMAIN, namespace: 'default', serviceAccount: 'web' });
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      key,
      cert: certificate.chain.join('\n'),
      ca: certificate.trustBundle,
      checkServerIdentity: () => undefined,
    });
    let got = '';
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on('secureConnect', () => s.write(text));
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

test('the egress gateway: a tunnel SNI naming a TCP ExternalService goes there; an unknown or malformed one is closed and counted', async () => {
  const echo = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.on('data', (c: Buffer) => s.write(`echo:${c.toString()}`));
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  cleanups.push(() => closeServer(echo));
  const port = (echo.address() as net.AddressInfo).port;
  const config = await load(externalAt('db', 'TCP', 5432, port), '  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }');
  const log: string[] = [];
  const gw = await proxy('egress', 'gateway', log, { host: '127.0.0.1', port: 0 });
  applyTo(gw, config, infoOf(gw, 'egress', 'gateway'));
  const at = gw.addresses.inbound!.port;
  assert.equal(await tunnel(at, 'outbound_.5432_._.db', 'select'), 'echo:select');
  for (const sni of ['outbound_.5432_._.nosuch', 'outbound_.5432_._.web', 'evil.example.test']) {
    assert.equal(await tunnel(at, sni, 'x'), '', sni);
  }
  assert.equal(await metric(gw, 'trellis_egress_refused_total', 'protocol="tcp"'), 3);
  assert.ok(
    log.some((l) => l.includes('"outbound_.5432_._.nosuch"') && l.includes('refused')),
    log.join('\n'),
  );
  // The gateway serves on.
  assert.equal(await tunnel(at, 'outbound_.5432_._.db', 'again'), 'echo:again');
});

/**
 * One loopback TLS server for two names, each with a certificate from its own CA (as two
 * virtual hosts behind one address): `https` answers HTTP with the SNI it was given, else it
 * answers each line of TCP bytes with it.
 */
async function twoNamesOneAddress(kind: 'https' | 'tls') {
  const names = ['a.example.test', 'b.example.test'] as const;
  const cas: Record<string, string> = {};
  const contexts = new Map<string, tls.SecureContext>();
  for (const name of names) {
    const ca = await makeLocalCa(`ca of ${name}`);
    const leaf = await issueServerCertificate(ca, { dnsNames: [name] });
    cas[name] = ca.cert;
    contexts.set(name, tls.createSecureContext({ cert: leaf.cert, key: leaf.key }));
  }
  const options = { SNICallback: (sni: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => cb(null, contexts.get(sni)) };
  const sniOf = (s: net.Socket) => String((s as TLSSocket & { servername?: string }).servername);
  const server =
    kind === 'https'
      ? https.createServer(options, (req, res) => res.end(`sni ${sniOf(req.socket)}`))
      : tls.createServer(options, (s) => {
          s.on('error', () => s.destroy());
          s.on('data', () => s.write(`sni ${sniOf(s)}\n`));
        });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => closeServer(server));
  const port = (server.address() as net.AddressInfo).port;
  const protocol = kind === 'https' ? 'HTTP' : 'TCP';
  const yaml = names.map((n, i) => externalAt(n.split('.')[0]!, protocol, 80 + i, port, `  tls: { caFile: ${n}.pem }\n`)).join('---\n');
  return { yaml, files: Object.fromEntries(names.map((n) => [`${n}.pem`, cas[n]!])) };
}

test('TLS origination, two ExternalServices on one address: each HTTP call gets its own SNI and CA bundle (and its own pooled connections)', async () => {
  const both = await twoNamesOneAddress('https');
  const config = await load(both.yaml, '', both.files);
  const web = await proxy('web', 'sidecar', []);
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  const port = web.addresses.httpProxy!.port;
  // Alternating: a connection kept for one must not carry the other's call.
  for (const name of ['a.example.test', 'b.example.test', 'a.example.test', 'b.example.test']) {
    const r = await viaProxy(port, name);
    assert.equal(r.status, 200, `${name}: ${r.body}`);
    assert.equal(r.body, `sni ${name}`);
  }
});

/** One line through the TCP listener at `port`: what came back before the first newline. */
function line(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    cleanups.push(() => void socket.destroy());
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      got += c;
      if (got.includes('\n')) {
        socket.destroy();
        resolve(got.slice(0, got.indexOf('\n')));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
}

test('TLS origination on TCP, two ExternalServices on one address: each connection gets its own SNI and CA bundle', async () => {
  const both = await twoNamesOneAddress('tls');
  const config = await load(both.yaml, '', both.files);
  const listen = { host: '127.0.0.1', port: 0 };
  const web = await proxy('web', 'sidecar', [], undefined, { a: listen, b: listen });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  for (const name of ['a', 'b', 'a', 'b']) {
    assert.equal(await line(web.addresses.upstreams[name]!.port, 'hello\n'), `sni ${name}.example.test`, name);
  }
});

/** A loopback TCP server that accepts and never says a word (a TLS handshake to it never ends); its sockets go with it. */
async function silentServer(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return closeServer(server);
  });
  return (server.address() as net.AddressInfo).port;
}

/** Connects to `port`, sends nothing, and resolves what came back once the other side closed (eventually: a bound, not a timing). */
async function untilClosed(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  let got = '';
  let closed = false;
  socket.on('data', (c: Buffer) => (got += c.toString()));
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  await eventually(() => closed, { what: 'the proxy closing the connection' });
  return got;
}

test('tcpConnectTimeout: an upstream whose TLS handshake never finishes is given up after it; the client is closed, counted reason="timeout"', async () => {
  const port = await silentServer();
  const { cert: ca } = await makeLocalCa('never asked');
  const config = await load(
    externalAt('stalls', 'TCP', 6379, port, '  tls: { caFile: ca.pem }\n'),
    // Tiny so the test is quick; the default (10 s) would hold the client that long.
    '  proxyLimits: { tcpConnectTimeout: 50ms }',
    { 'ca.pem': ca },
  );
  const web = await proxy('web', 'sidecar', [], undefined, { stalls: { host: '127.0.0.1', port: 0 } });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  assert.equal(web.limits.current.tcpConnectTimeoutMs, 50);
  assert.equal(await untilClosed(web.addresses.upstreams.stalls!.port), '');
  await eventually(async () => assert.equal(await metric(web, 'trellis_tcp_connect_failures_total', 'destination="stalls",reason="timeout"'), 1));
  assert.equal(await metric(web, 'trellis_tcp_connections_total', 'destination="stalls"'), 0, 'no connection was proxied');
});

test('tcpIdleTimeout: a proxied TCP connection with no bytes either way is closed after it, counted in trellis_tcp_idle_timeouts_total', async () => {
  const echo = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  cleanups.push(() => closeServer(echo));
  const config = await load(externalAt('quiet', 'TCP', 6379, (echo.address() as net.AddressInfo).port), '  proxyLimits: { tcpIdleTimeout: 50ms }');
  const web = await proxy('web', 'sidecar', [], undefined, { quiet: { host: '127.0.0.1', port: 0 } });
  applyTo(web, config, infoOf(web, 'web', 'sidecar'));
  assert.equal(web.limits.current.tcpIdleTimeoutMs, 50);
  // The client sends nothing: the proxy connects upstream, then closes both sides once the timer runs out.
  assert.equal(await untilClosed(web.addresses.upstreams.quiet!.port), '');
  await eventually(async () => {
    assert.equal(await metric(web, 'trellis_tcp_idle_timeouts_total', 'destination="quiet"'), 1);
    assert.equal(await metric(web, 'trellis_tcp_connections_total', 'destination="quiet"'), 1, 'proxied, then closed');
  });
  assert.equal(await metric(web, 'trellis_tcp_connect_failures_total', 'destination="quiet"'), 0);
});
