// The ingress Gateway on Kubernetes, end to end with real processes and the API stand-in
// in place of a cluster: a Gateway of class trellis, its TLS Secret and an HTTPRoute
// created in the stand-in make a real `trellis proxy --gateway` (joined with its
// ServiceAccount token) answer HTTPS with the Secret's certificate (a client that trusts
// only the test CA) and route into a meshed backend over mTLS. The Secret replaced in the
// API swaps the certificate under load, some clients on kept-alive connections, some
// handshaking per request, with a request held in flight across the swap: none fails.
// The proxy's /config, the control plane's /v1/snapshots and both logs show no private key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import { loadAcrossCertificateSwap } from '../helpers/certificate-swap-load.js';
import { TrellisProcesses, type Proc } from '../helpers/trellis-processes.js';
import { injectedBackendPod, writeKubeconfig } from '../helpers/kubernetes-control-plane.js';
import { issueServerCertificate, makeLocalCa, type PemPair } from '../../src/security/local-tls.js';

const HOST = 'site.example.test';
/** Requests each client makes at most; the load also stops this long after the new certificate is seen. */
const MAX_REQUESTS = 3000;
const AFTER_SWAP_MS = 1500;

function tlsSecret(pair: PemPair): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: { name: 'site-tls', namespace: 'shop' },
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64') },
  };
}

function get(port: number, ca: string, agent: https.Agent | false, urlPath = '/'): Promise<{ status: number; serial: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: HOST, path: urlPath, ca, agent, headers: { host: HOST } }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber ?? '';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, serial: serial.toUpperCase(), body }));
      res.on('error', reject);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toUpperCase();

describe('the ingress Gateway from the kubernetes API, with real proxies', { timeout: 180_000 }, () => {
  let api: KubeApiStandIn;
  let dir: string;
  let app: http.Server;
  let ca: PemPair;
  let first: PemPair;
  let second: PemPair;
  let controlUrl = '';
  let gatewayAdmin = '';
  let gatewayPort = 0;
  const adminToken = 'k8s-gateway-e2e-admin-token';
  const processes = new TrellisProcesses();
  const procs = processes.procs;
  /** Requests to /slow wait here until the test lets them go. */
  const held: http.ServerResponse[] = [];

  const start = (args: string[]): Proc => processes.start(args);
  const waitFor = (p: Proc, re: RegExp, what: string): Promise<RegExpMatchArray> => processes.waitFor(p, re, what);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-k8s-gw-e2e-'));
    processes.home = dir;
    ca = await makeLocalCa('k8s gateway test CA');
    first = await issueServerCertificate(ca, { dnsNames: [HOST] });
    second = await issueServerCertificate(ca, { dnsNames: [HOST] });
    app = http.createServer((req, res) => {
      if (req.url === '/slow') held.push(res);
      else res.end(`backend got ${req.url}`);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as AddressInfo).port;

    api = await new KubeApiStandIn().start();
    api.tokens.set('edge-token', { username: 'system:serviceaccount:shop:edge', audiences: ['trellis'] });
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:shop-backend', audiences: ['trellis'] });
    api.apply(httpService('backend', 'shop', 'http'));
    api.apply(tlsSecret(first));
    api.apply({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        gatewayClassName: 'trellis',
        listeners: [{ name: 'https', port: 8443, protocol: 'HTTPS', hostname: HOST, tls: { certificateRefs: [{ kind: 'Secret', name: 'site-tls' }] } }],
      },
    });
    api.apply({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'site', namespace: 'shop' },
      spec: {
        parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' }],
        hostnames: [HOST],
        rules: [{ backendRefs: [{ name: 'backend', port: 80 }] }],
      },
    });
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeKubeconfig(api, kubeconfig);
    await writeFile(path.join(dir, 'edge-token'), 'edge-token\n');
    await writeFile(path.join(dir, 'backend-token'), 'backend-token\n');
    await writeFile(path.join(dir, 'admin-token'), `${adminToken}\n`, { mode: 0o600 });

    const control = start([
      'control',
      ...['--kubernetes', '--kubeconfig', kubeconfig, '--admin', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')],
      ...['--admin-token-file', path.join(dir, 'admin-token')],
    ]);
    controlUrl = (await waitFor(control, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 'the control plane to listen'))[1]!;

    const backend = start([
      'proxy',
      ...['--service', 'backend', '--version', 'v1', '--id', 'backend-0', '--control', controlUrl],
      ...['--credential-file', path.join(dir, 'backend-token'), '--app', `127.0.0.1:${appPort}`, '--inbound', '127.0.0.1:0', '--access-log', 'off'],
    ]);
    const inbound = Number((await waitFor(backend, /inbound 127\.0\.0\.1:(\d+)/, 'the backend proxy to start'))[1]);
    api.apply(injectedBackendPod(inbound, appPort));
    api.apply({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'backend-xyz', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'backend' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: appPort }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'backend-0', namespace: 'shop' } }],
    });

    const edge = start([
      'proxy',
      ...['--gateway', '--service', 'edge', '--id', 'edge-0', '--control', controlUrl, '--credential-file', path.join(dir, 'edge-token')],
      ...['--gateway-port', '8443=127.0.0.1:0', '--admin', '127.0.0.1:0', '--access-log', 'off'],
    ]);
    gatewayAdmin = (await waitFor(edge, /admin (http:\/\/127\.0\.0\.1:\d+)/, 'the gateway proxy to start'))[1]!;
    gatewayPort = await eventually(
      async () => {
        const config = (await (await fetch(`${gatewayAdmin}/config`)).json()) as { addresses?: { gateway?: Record<string, { port: number }> } };
        return config.addresses?.gateway?.['8443']?.port ?? false;
      },
      { timeoutMs: 30_000, what: 'the gateway proxy to open the Gateway’s port 8443' },
    );
  });

  after(async () => {
    for (const res of held) res.end('released');
    await processes.stop();
    await api?.close();
    await new Promise((r) => app?.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers HTTPS with the Secret’s certificate and routes into the meshed backend over mTLS', async () => {
    const answer = await eventually(
      async () => {
        const r = await get(gatewayPort, ca.cert, false, '/hello').catch(() => undefined);
        return r?.status === 200 ? r : false;
      },
      { timeoutMs: 30_000, what: 'a 200 from the backend through the gateway' },
    );
    assert.equal(answer.body, 'backend got /hello');
    assert.equal(answer.serial, serialOf(first.cert));
    assert.match(procs[0]!.output, /issued spiffe:\/\/cluster\.local\/ns\/shop\/sa\/edge to gateway edge-0/);
    assert.match(procs[0]!.output, /issued spiffe:\/\/cluster\.local\/ns\/shop\/sa\/shop-backend to sidecar backend-0/);
  });

  it('shows no private key in the proxy’s /config, the control plane’s /v1/snapshots, or either log', async () => {
    const proxyConfig = await (await fetch(`${gatewayAdmin}/config`)).text();
    const snapshot = await (await fetch(`${controlUrl}/v1/snapshots/edge-0`, { headers: { authorization: `Bearer ${adminToken}` } })).text();
    assert.ok(snapshot.includes('site-tls'), snapshot.slice(0, 500));
    const keyLine = first.key.split('\n')[1]!;
    for (const [what, text] of [
      ['/config', proxyConfig],
      ['/v1/snapshots', snapshot],
      ['control log', procs[0]!.output],
      ['gateway log', procs[2]!.output],
    ] as const) {
      assert.doesNotMatch(text, /PRIVATE KEY/, what);
      assert.ok(!text.includes(keyLine), what);
    }
  });

  it('swaps the certificate when the Secret is replaced, failing no request under load and dropping none in flight', async (t) => {
    // One request held in the backend across the swap, on a connection made before it.
    const slow = get(gatewayPort, ca.cert, false, '/slow');
    await eventually(() => held.length === 1, { what: 'the slow request to reach the backend' });

    const { count, failures, served, swappedSeenAt } = await loadAcrossCertificateSwap({
      get: (agent) => get(gatewayPort, ca.cert, agent),
      newSerial: serialOf(second.cert),
      swap: () => void api.apply(tlsSecret(second)),
      maxRequests: MAX_REQUESTS,
      afterSwapMs: AFTER_SWAP_MS,
    });
    // The request held across the swap completes.
    for (const res of held.splice(0)) res.end('slow done');
    const slowAnswer = await slow;
    t.diagnostic(`${count} requests, ${failures.length} failed; certificates served: ${served.size}`);
    assert.deepEqual(failures, [], `${failures.length} of ${count} requests failed`);
    assert.ok(swappedSeenAt !== undefined, `the new certificate was served (seen: ${[...served].join(', ')})`);
    assert.ok(served.has(serialOf(first.cert)), 'the old certificate was served before the swap');
    assert.deepEqual([slowAnswer.status, slowAnswer.body, slowAnswer.serial], [200, 'slow done', serialOf(first.cert)]);
    assert.equal((await get(gatewayPort, ca.cert, false)).serial, serialOf(second.cert), 'a new connection gets the new certificate');
  });
});
