// The ingress scenario (issue 15): the Trellis ingress terminating TLS against nginx
// terminating TLS, both serving one certificate (P-256, for localhost) and both in the
// same shape, so the ratio compares edges, not topologies:
//
//   Trellis: client ═TLS═► gateway (Gateway `edge`, HTTPS) ═mTLS═► upstream's sidecar → upstream
//   nginx:   client ═TLS═► nginx edge                       ═mTLS═► nginx (inbound)  → upstream
//
// Two measures: max throughput over kept-alive connections (wrk, which speaks TLS and keeps
// its connections), and the new-TLS-connection rate (each connection a full handshake, no
// resumption: connect, GET /, read the answer, close), where keep-alive hides handshakes.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { newHistogram, recordMs, summarize, type LatencySummary } from '../src/loadgen/histogram.js';
import { issueServerCertificate, makeLocalCa } from '../src/security/local-tls.js';
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV, mintCredential, newBootstrapSecret } from '../src/security/bootstrap-credential.js';
import { freePort, nginxMain, type Binaries, type Managed, type Processes } from './targets.js';
import { makeTlsMaterial, nginxOriginate, nginxTlsServer } from './tls-peers.js';
import { runWrk } from './wrk.js';

export interface IngressTlsOptions {
  readonly procs: Processes;
  readonly bins: Binaries;
  readonly repoRoot: string;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  /** Connections at once in the new-TLS-connection loop. */
  readonly newConnections: number;
  readonly log: (msg: string) => void;
}

export interface NewTlsConnectionResult {
  readonly completed: number;
  readonly perSecond: number;
  readonly errors: number;
  /** Connect to the answer's last byte, µs. */
  readonly latencyUs: LatencySummary;
}

export interface IngressEdgeResult {
  readonly rps: number;
  readonly p99Us: number;
  readonly errors: number;
  readonly newConnections: NewTlsConnectionResult;
}

export interface IngressTlsResult {
  readonly trellis: IngressEdgeResult;
  readonly nginx: IngressEdgeResult;
  /** trellis / nginx. */
  readonly throughputRatio: number;
  readonly newConnectionRatio: number;
}

const HOST = 'localhost';

/** One HTTPS GET on a new TLS connection (no session reused); true when it answered 200. */
function oneTlsGet(port: number, ca: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let text = '';
    const sock = tls.connect({ host: '127.0.0.1', port, servername: HOST, ca, ALPNProtocols: ['http/1.1'] }, () => {
      sock.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      if (text.length < 16) text += d;
    });
    sock.once('end', () => done(text.startsWith('HTTP/1.1 200')));
    sock.once('error', () => done(false));
  });
}

/** `concurrency` loops of new TLS connections for a warm-up and a measured window. */
export async function runNewTlsConnections(
  port: number,
  ca: string,
  concurrency: number,
  durationMs: number,
  warmupMs: number,
): Promise<NewTlsConnectionResult> {
  const histogram = newHistogram();
  const measureFrom = performance.now() + warmupMs;
  const end = measureFrom + durationMs;
  let completed = 0;
  let errors = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const ok = await oneTlsGet(port, ca, 5000);
      const t1 = performance.now();
      if (t0 < measureFrom || t1 > end) continue;
      if (ok) {
        completed++;
        recordMs(histogram, t1 - t0);
      } else errors++;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, loop));
    return { completed, perSecond: completed / (durationMs / 1000), errors, latencyUs: summarize(histogram) };
  } finally {
    histogram.destroy();
  }
}

async function waitForTls(port: number, ca: string, watch: readonly Managed[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const m of watch) if (m.hasExited()) throw new Error(`${m.name} exited: ${m.output().slice(-400)}`);
    if (await oneTlsGet(port, ca, 1000)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`nothing answered 200 over TLS on port ${port} within ${timeoutMs} ms`);
}

/** The Trellis edge: a control plane, the upstream's sidecar, and the gateway serving Gateway `edge`. */
async function startTrellisEdge(o: IngressTlsOptions, certFile: string, keyFile: string, ca: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const tdir = path.join(o.dir, 'ingress-trellis');
  mkdirSync(tdir, { recursive: true });
  const [cpPort, inboundPort, edgePort] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(
    path.join(tdir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  services:
    - { name: upstream, protocol: http, health: { tcp: {} } }
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: localhost-tls
  annotations: { trellis.dev/certificate-file: ${certFile}, trellis.dev/key-file: ${keyFile} }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  listeners: [{ name: https, port: 8443, protocol: HTTPS, tls: { certificateRefs: [{ name: localhost-tls }] } }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: upstream }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  rules: [{ backendRefs: [{ name: upstream }] }]
`,
  );
  const trellis = path.join(o.repoRoot, 'bin', 'trellis.js');
  // TRELLIS_BENCH_CPU_PROF=DIR: each proxy writes a V8 CPU profile there when it stops (node refuses --cpu-prof in NODE_OPTIONS).
  const profDir = process.env.TRELLIS_BENCH_CPU_PROF;
  const cpuProf = profDir === undefined || profDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`];
  const { PROXY_NODE_FLAGS } = await import('../src/proxy/node-flags.js');
  const secret = newBootstrapSecret();
  const control = `http://127.0.0.1:${cpPort}`;
  const started: Managed[] = [];
  const stop = async (): Promise<void> => void (await Promise.all(started.map((m) => o.procs.stop(m))));
  try {
    started.push(
      o.procs.start(
        'trellis control (ingress)',
        process.execPath,
        [trellis, 'control', '--config', path.join(tdir, 'mesh.yaml'), '--admin', `127.0.0.1:${cpPort}`],
        tdir,
        {
          [BOOTSTRAP_SECRET_ENV]: secret,
          TRELLIS_HOME: path.join(tdir, 'home'),
        },
      ),
    );
    const proxy = (name: string, args: string[], kind: 'sidecar' | 'gateway', service: string, id: string): Managed =>
      o.procs.start(
        name,
        process.execPath,
        [...PROXY_NODE_FLAGS, ...cpuProf, trellis, 'proxy', ...args, '--control', control, '--admin', '127.0.0.1:0', '--access-log', 'off'],
        tdir,
        {
          [CREDENTIAL_ENV]: mintCredential(secret, { kind, service, id }),
        },
      );
    await new Promise((r) => setTimeout(r, 500));
    started.push(
      proxy(
        'trellis proxy (inbound, upstream-0)',
        ['--service', 'upstream', '--id', 'upstream-0', '--app', `127.0.0.1:${o.upstreamPort}`, '--inbound', `127.0.0.1:${inboundPort}`],
        'sidecar',
        'upstream',
        'upstream-0',
      ),
    );
    started.push(
      proxy(
        'trellis proxy (gateway edge)',
        ['--gateway', '--service', 'edge', '--id', 'edge', '--gateway-port', `8443=127.0.0.1:${edgePort}`],
        'gateway',
        'edge',
        'edge',
      ),
    );
    await waitForTls(edgePort, ca, started, 20_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port: edgePort, stop };
}

/** The nginx edge: TLS terminated with the same certificate, then mutual TLS to an nginx inbound in front of the upstream. */
async function startNginxEdge(o: IngressTlsOptions, certFile: string, keyFile: string, ca: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const ndir = path.join(o.dir, 'ingress-nginx');
  mkdirSync(ndir, { recursive: true });
  const mtls = makeTlsMaterial(ndir);
  const [inner, edgePort] = [await freePort(), await freePort()];
  const start = (name: string, http: string): Managed => {
    const conf = path.join(ndir, `${name}.conf`);
    writeFileSync(conf, nginxMain(ndir, name, http));
    return o.procs.start(name, o.bins.nginx, ['-p', ndir, '-e', path.join(ndir, `${name}.error.log`), '-c', conf], ndir);
  };
  const started: Managed[] = [];
  const stop = async (): Promise<void> => void (await Promise.all(started.map((m) => o.procs.stop(m))));
  try {
    started.push(start('nginx-ingress-inbound', nginxTlsServer('inbound', inner, o.upstreamPort, mtls)));
    started.push(
      start(
        'nginx-ingress-edge',
        `  upstream next {
    server 127.0.0.1:${inner};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${edgePort} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass https://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${nginxOriginate('proxy_ssl', mtls)}
    }
  }`,
      ),
    );
    await waitForTls(edgePort, ca, started, 15_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port: edgePort, stop };
}

async function measureEdge(o: IngressTlsOptions, name: string, port: number, ca: string): Promise<IngressEdgeResult> {
  const url = `https://${HOST}:${port}/`;
  const wrk = (durationS: number): ReturnType<typeof runWrk> =>
    runWrk({ wrk: o.bins.wrk, url: url.replace(HOST, '127.0.0.1'), threads: 1, connections: o.connections, durationS, timeoutS: 5, headers: { Host: HOST } });
  if (o.warmupS > 0) await wrk(o.warmupS);
  o.log(`ingress-tls: ${name}, keep-alive max rate, ${o.durationS}s`);
  const r = await wrk(o.durationS);
  o.log(`ingress-tls: ${name}, new TLS connections (${o.newConnections} at once), ${o.durationS}s`);
  const fresh = await runNewTlsConnections(port, ca, o.newConnections, o.durationS * 1000, o.warmupS * 1000);
  const errors = r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
  return { rps: r.rps, p99Us: r.latencyUs.p99, errors, newConnections: fresh };
}

export async function runIngressTls(o: IngressTlsOptions): Promise<IngressTlsResult> {
  const ca = await makeLocalCa('bench local HTTPS CA');
  const cert = await issueServerCertificate(ca, { dnsNames: [HOST], ips: ['127.0.0.1'] });
  const certFile = path.join(o.dir, 'ingress-localhost.pem');
  const keyFile = path.join(o.dir, 'ingress-localhost.key');
  writeFileSync(certFile, cert.cert);
  writeFileSync(keyFile, cert.key, { mode: 0o600 });
  const trellisEdge = await startTrellisEdge(o, certFile, keyFile, ca.cert);
  let trellis: IngressEdgeResult;
  try {
    trellis = await measureEdge(o, 'trellis', trellisEdge.port, ca.cert);
  } finally {
    await trellisEdge.stop();
  }
  const nginxEdge = await startNginxEdge(o, certFile, keyFile, ca.cert);
  let nginx: IngressEdgeResult;
  try {
    nginx = await measureEdge(o, 'nginx', nginxEdge.port, ca.cert);
  } finally {
    await nginxEdge.stop();
  }
  const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 1000) / 1000 : 0);
  return {
    trellis,
    nginx,
    throughputRatio: ratio(trellis.rps, nginx.rps),
    newConnectionRatio: ratio(trellis.newConnections.perSecond, nginx.newConnections.perSecond),
  };
}

/** The lines the bench prints for this scenario. */
export function formatIngressTls(r: IngressTlsResult): string {
  const edge = (name: string, e: IngressEdgeResult): string =>
    `  ${name.padEnd(8)} keep-alive ${Math.round(e.rps)} rps (p99 ${(e.p99Us / 1000).toFixed(2)} ms${e.errors ? `, ${e.errors} errors` : ''}); ` +
    `new TLS connections ${Math.round(e.newConnections.perSecond)}/s (p99 ${(e.newConnections.latencyUs.p99 / 1000).toFixed(2)} ms${e.newConnections.errors ? `, ${e.newConnections.errors} errors` : ''})`;
  return [
    'ingress TLS: client ═TLS═► edge ═mTLS═► inbound → upstream (same localhost certificate at both edges)',
    edge('trellis', r.trellis),
    edge('nginx', r.nginx),
    `  trellis/nginx: max throughput ${r.throughputRatio.toFixed(3)} (target ≥ 0.6), new TLS connections ${r.newConnectionRatio.toFixed(3)}`,
    '',
  ].join('\n');
}
