// `trellis up --isolate` with ExternalServices (Linux, root, ip, nft, setpriv; skipped
// otherwise). An unmodified client in a pod calls http://api.example.test/ by name: the
// pod's hosts file gives the ExternalService's virtual address, the pod's rules redirect
// it to the sidecar's HTTP proxy listener, which applies the route (a fault on /chaos) and
// the outbound policy, and sends it over mutual TLS to the egress gateway on the host's
// bridge address; the gateway originates TLS to a loopback HTTPS server that checks the
// SNI. A TCP ExternalService the client lists reaches a loopback TCP server the same way,
// and a TLS one carries the app's own TLS (its hello must name a declared host).
// REGISTRY_ONLY refuses an undeclared Host from inside the pod (403 egress-refused,
// counted), and the app cannot skip its sidecar: not to the gateway, not to any address.
// The after() hook stops the mesh, removes the run by its id and checks nothing is left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { alive, meshUp, REPO, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { NETNS_PREFIX, removeRun, run } from '../../src/runner/isolation/network.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';

const missing = isolationMissing();
// Its own subnet, apart from the other isolated tests'.
const SUBNET = '10.218.0.0/16';
const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');

/** Runs a Node script inside a namespace as a plain (root, not sidecar) process; resolves with its stdout. */
function inPod(netns: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', script], { cwd: REPO, timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

/** A script that GETs `url` (with `host` as the Host header when given) and prints `<status> <trellis-error> <body>` or `error <code>`. */
const getScript = (url: string, host?: string): string =>
  `import http from 'node:http'; http.get(${JSON.stringify(url)}, { headers: ${JSON.stringify(host === undefined ? {} : { host })}, timeout: 10000 }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(res.statusCode + ' ' + (res.headers['trellis-error'] ?? '-') + ' ' + b)); }).on('error', (e) => console.log('error ' + e.code));`;

/** A script that connects to host:port and prints `connected` or the error's code. */
const connectScript = (host: string, port: number): string =>
  `import net from 'node:net'; const s = net.connect(${port}, ${JSON.stringify(host)}); s.setTimeout(3000, () => { console.log('timeout'); process.exit(0); }); s.on('connect', () => { console.log('connected'); s.destroy(); }); s.on('error', (e) => console.log(e.code));`;

async function metric(admin: { host: string; port: number }, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('trellis up --isolate with ExternalServices', { skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false, timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-isolated-egress-'));
  // The sidecars (uid 1337) write their access logs here.
  chmodSync(dir, 0o755);
  let mesh: RunningMesh | undefined;
  let runId = '';
  let httpsServer: https.Server | undefined;
  let tcpServer: net.Server | undefined;
  const client = () => {
    const i = mesh?.state.instances.find((x) => x.id === 'client-0');
    assert.ok(i, 'client-0 is planned');
    return i;
  };
  const clientPod = (): string => {
    const p = mesh?.state.isolation?.pods['client-0'];
    assert.ok(p, 'client-0 has a pod');
    return p.netns;
  };

  before(async () => {
    const ca = await makeLocalCa('e2e isolated external ca');
    const leaf = await issueServerCertificate(ca, { dnsNames: ['api.example.test', 'vault.example.test'] });
    // The outside world, on the host's loopback (which no pod can reach): it answers only a hello naming one of its names.
    httpsServer = https.createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
      const sni = (req.socket as TLSSocket & { servername?: string | false }).servername;
      res.statusCode = sni === 'api.example.test' || sni === 'vault.example.test' ? 200 : 421;
      res.end(`external via ${String(sni)} ${req.url}`);
    });
    await new Promise<void>((r) => httpsServer!.listen(0, '127.0.0.1', r));
    tcpServer = net.createServer((s) => s.once('data', (d) => s.end(`ledger:${d.toString()}`)));
    await new Promise<void>((r) => tcpServer!.listen(0, '127.0.0.1', r));
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(
      join(dir, 'mesh.yaml'),
      `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: iso-egress }
spec:
  services:
    - name: client
      protocol: http
      command: node ${ECHO}
      port: 8000
      upstreams: [api, ledger, vault]
      health: { http: { path: /healthz, status: 200 }, interval: 1s }
  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: api }
spec:
  hosts: [api.example.test]
  ports: [{ number: 80, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${(httpsServer.address() as net.AddressInfo).port} }]
  tls: { caFile: ca.pem }
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ledger }
spec:
  hosts: [ledger.example.test]
  ports: [{ number: 7000, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${(tcpServer.address() as net.AddressInfo).port} }]
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: vault }
spec:
  hosts: [vault.example.test]
  ports: [{ number: 443, protocol: TLS }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${(httpsServer.address() as net.AddressInfo).port} }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api }
spec:
  parentRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
  rules:
    - name: chaos
      matches: [{ path: { type: PathPrefix, value: /chaos } }]
      backendRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
    - name: rest
      backendRefs: [{ group: trellis.dev, kind: ExternalService, name: api }]
      timeouts: { request: 10s }
---
apiVersion: trellis.dev/v1alpha1
kind: FaultInjection
metadata: { name: chaos }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: chaos }]
  abort: { httpStatus: 503, percent: 100 }
`,
    );
    mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'), ['--isolate', '--isolate-subnet', SUBNET], 180_000);
    runId = mesh.state.isolation?.runId ?? '';
  });

  after(async () => {
    const gatewayPid = mesh?.state.egressGateway?.pid;
    try {
      await stopMesh(mesh);
      assert.equal(alive(gatewayPid), false, 'the egress gateway stops with the mesh');
    } finally {
      // Whatever the stop left (it should leave nothing), removed by the run's prefix.
      if (runId !== '') await removeRun(runId);
      await rm(dir, { recursive: true, force: true });
      httpsServer?.closeAllConnections();
      await new Promise((r) => (httpsServer ? httpsServer.close(r) : r(undefined)));
      await new Promise((r) => (tcpServer ? tcpServer.close(r) : r(undefined)));
    }
    const left = (await run('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(`${NETNS_PREFIX}${runId}`));
    assert.deepEqual(left, [], 'no namespace of the run is left');
  });

  test("the ExternalServices' hosts resolve in the pod to their virtual addresses; the egress gateway listens on the bridge", async () => {
    const iso = mesh?.state.isolation;
    assert.ok(iso);
    const api = iso.externals.api;
    assert.ok(api, 'api has a virtual address');
    const hosts = await inPod(clientPod(), `import { readFileSync } from 'node:fs'; console.log(readFileSync('/etc/hosts', 'utf8'))`);
    assert.match(hosts, new RegExp(`^${api.vip.replaceAll('.', '\\.')}\\tapi\\.example\\.test$`, 'm'));
    assert.equal(mesh?.state.egressGateway?.listen.host, iso.gateway);
    assert.equal(client().env.TRELLIS_UPSTREAM_LEDGER, 'ledger.example.test:7000');
    assert.equal(client().env.TRELLIS_UPSTREAM_API, 'api.example.test:80');
  });

  test('an app in a pod calls http://api.example.test/ and gets the loopback HTTPS server through the egress gateway, TLS originated with its SNI', async () => {
    const gw = mesh?.state.egressGateway;
    assert.ok(gw);
    const before = await metric(gw.admin, /^trellis_http_requests_total\{.*destination="api"/);
    const outBefore = await metric(client().admin, /^trellis_http_requests_total\{.*direction="outbound".*destination="api"/);
    // The gateway registers with the control plane as it comes up; until the sidecar has its endpoint the call is a 503.
    const out = await eventually(
      async () => {
        const got = await inPod(clientPod(), getScript('http://api.example.test/v1/things'));
        return got.startsWith('200 ') ? got : false;
      },
      { what: 'the call from the pod through the egress gateway', timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.equal(out, '200 - external via api.example.test /v1/things');
    await eventually(async () => {
      assert.ok((await metric(gw.admin, /^trellis_http_requests_total\{.*destination="api"/)) > before, 'the egress gateway counted it');
      assert.ok(
        (await metric(client().admin, /^trellis_http_requests_total\{.*direction="outbound".*destination="api"/)) > outBefore,
        "the client's sidecar counted it",
      );
    });
  });

  test("the client's sidecar applies the ExternalService's route: a fault on /chaos", async () => {
    const out = await inPod(clientPod(), getScript('http://api.example.test/chaos/x'));
    assert.match(out, /^503 fault-abort /);
  });

  test('a TCP ExternalService the service lists is reached by name through the sidecar and the gateway', async () => {
    const gw = mesh?.state.egressGateway;
    assert.ok(gw);
    const out = await eventually(
      async () => {
        const got = await inPod(
          clientPod(),
          `import net from 'node:net'; const s = net.connect(7000, 'ledger.example.test', () => s.write('hi')); let b = ''; s.on('data', (c) => (b += c)); s.on('close', () => console.log(b || 'closed')); s.on('error', (e) => console.log(e.code));`,
        );
        return got === 'ledger:hi' ? got : false;
      },
      { what: 'the TCP call through the egress gateway', timeoutMs: 20_000, intervalMs: 500 },
    );
    assert.equal(out, 'ledger:hi');
    assert.ok((await metric(gw.admin, /^trellis_tcp_connections_total\{.*destination="ledger"/)) > 0, 'through the egress gateway');
  });

  test("a TLS ExternalService carries the app's own TLS; a hello naming an undeclared host is closed and counted", async () => {
    const gw = mesh?.state.egressGateway;
    assert.ok(gw);
    const tlsGet = (servername: string): string =>
      `import https from 'node:https'; import { readFileSync } from 'node:fs'; https.get({ host: 'vault.example.test', port: 443, path: '/secret', servername: ${JSON.stringify(servername)}, ca: readFileSync(${JSON.stringify(join(dir, 'ca.pem'))}), checkServerIdentity: () => undefined, timeout: 10000 }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(res.statusCode + ' ' + b)); }).on('error', (e) => console.log('error ' + e.code));`;
    const out = await eventually(
      async () => {
        const got = await inPod(clientPod(), tlsGet('vault.example.test'));
        return got.startsWith('200 ') ? got : false;
      },
      { what: 'the TLS call through the egress gateway', timeoutMs: 20_000, intervalMs: 500 },
    );
    assert.equal(out, '200 external via vault.example.test /secret');
    assert.ok((await metric(gw.admin, /^trellis_tcp_connections_total\{.*destination="vault"/)) > 0, 'through the egress gateway');
    const before = await metric(client().admin, /^trellis_egress_refused_total\{protocol="tcp"/);
    assert.match(await inPod(clientPod(), tlsGet('evil.example.test')), /^error /);
    assert.equal(await metric(client().admin, /^trellis_egress_refused_total\{protocol="tcp"/), before + 1);
  });

  test('REGISTRY_ONLY refuses an undeclared host from inside the pod, with the metric', async () => {
    const api = mesh?.state.isolation?.externals.api;
    assert.ok(api);
    const before = await metric(client().admin, /^trellis_egress_refused_total\{protocol="http"/);
    // To a declared ExternalService's address, naming another host: the sidecar judges the Host.
    assert.match(await inPod(clientPod(), getScript(`http://${api.vip}/`, 'elsewhere.example.test')), /^403 egress-refused /);
    // Through the HTTP proxy listener, as an app that names it as its proxy.
    assert.match(await inPod(clientPod(), getScript('http://127.0.0.1:15001/', 'elsewhere.example.test')), /^403 egress-refused /);
    assert.equal(await metric(client().admin, /^trellis_egress_refused_total\{protocol="http"/), before + 2);
    // And a log line naming the host, in the client's sidecar's log.
    await eventually(async () => {
      assert.match(
        await readFile(join(mesh?.state.logDir ?? '', 'client-0.sidecar.log'), 'utf8'),
        /outbound http call to "elsewhere\.example\.test" refused: no service or ExternalService declares it/,
      );
    });
    // By name: an undeclared host does not resolve in the pod.
    assert.match(await inPod(clientPod(), getScript('http://elsewhere.example.test/')), /^error /);
  });

  test('an app in a pod cannot skip its sidecar to leave the mesh', async () => {
    const iso = mesh?.state.isolation;
    const gw = mesh?.state.egressGateway;
    assert.ok(iso && gw);
    const pod = clientPod();
    assert.ok(httpsServer);
    const httpsPort = (httpsServer.address() as net.AddressInfo).port;
    // The egress gateway's mutual-TLS listener, on the host's bridge address: the pod's rules refuse the app.
    assert.equal(await inPod(pod, connectScript(gw.listen.host, gw.listen.port)), 'ECONNREFUSED');
    // The outside server's port on the host's bridge address, and on the pod's own loopback (not the host's).
    assert.equal(await inPod(pod, connectScript(iso.gateway, httpsPort)), 'ECONNREFUSED');
    assert.notEqual(await inPod(pod, connectScript('127.0.0.1', httpsPort)), 'connected');
    // A declared ExternalService's address on a port it does not declare.
    assert.equal(await inPod(pod, connectScript(iso.externals.api?.vip ?? '', 443)), 'ECONNREFUSED');
    // Any other address.
    assert.notEqual(await inPod(pod, connectScript('192.0.2.1', 443)), 'connected');
  });
});
