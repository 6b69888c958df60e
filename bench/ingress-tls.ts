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
// Throughput is measured in rounds that visit every edge in turn (a busy machine's drift
// cancels out of the per-round ratios), with the CPU each edge's processes spent per
// request (the edge and its inbound proxy apart): on a shared machine the robust measure.
// With --baseline DIR the Trellis edge of that build runs in the same rounds. With --relay a
// bare Node TLS relay (bench/tls-relay.ts: no HTTP, bytes only) in front of nginx's inbound
// runs in them too: the floor of an edge on Node's TLS sockets, so the edge CPU per request
// splits into what Node costs (relay/nginx) and what the gateway's own work adds
// (trellis/relay).
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { newHistogram, recordMs, summarize, type LatencySummary } from '../src/loadgen/histogram.js';
import { issueServerCertificate, makeLocalCa } from '../src/security/local-tls.js';
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV, mintCredential, newBootstrapSecret } from '../src/security/bootstrap-credential.js';
import { cpuSecondsPer1k, sampleGroups } from './resources.js';
import { cpuProfFlags, freePort, nginxMain, type Binaries, type Managed, type Processes } from './targets.js';
import { INBOUND_NAME, makeTlsMaterial, nginxOriginate, nginxTlsServer } from './tls-peers.js';
import { runWrk } from './wrk.js';

export interface IngressTlsOptions {
  readonly procs: Processes;
  readonly bins: Binaries;
  readonly repoRoot: string;
  /** A built checkout to compare with (--baseline): its Trellis edge runs in the same rounds. */
  readonly baselineRoot?: string;
  /** Runs the bare Node TLS relay edge (bench/tls-relay.ts) in the same rounds. */
  readonly relay?: boolean;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  /** Keep-alive max-rate rounds, each visiting every edge. */
  readonly rounds: number;
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

/** One keep-alive max-rate run of one edge. */
export interface IngressRound {
  readonly rps: number;
  readonly p99Us: number;
  readonly errors: number;
  /** CPU milliseconds per 1,000 requests of the edge's processes and of its inbound proxy's. */
  readonly edgeCpuMsPer1k?: number;
  readonly inboundCpuMsPer1k?: number;
}

export interface IngressEdgeResult extends IngressRound {
  /** Every round; the fields above are the round with the median rps. */
  readonly rounds: readonly IngressRound[];
  readonly newConnections: NewTlsConnectionResult;
}

export interface IngressTlsResult {
  readonly trellis: IngressEdgeResult;
  readonly nginx: IngressEdgeResult;
  readonly baseline?: IngressEdgeResult;
  /** The bare Node TLS relay in front of nginx's inbound (--relay). */
  readonly relay?: IngressEdgeResult;
  /** trellis / nginx, the median of the rounds' ratios. */
  readonly throughputRatio: number;
  readonly newConnectionRatio: number;
  /** trellis / baseline (median of the rounds'), with --baseline. */
  readonly baselineThroughputRatio?: number;
  /** The machine's 1-minute load average as the rounds began and as they ended (CPU per request rises with it). */
  readonly load: readonly [number, number];
}

/** A running edge: where it listens, its edge and inbound processes, how to stop it. */
interface Edge {
  readonly name: string;
  readonly port: number;
  readonly edge: Managed;
  readonly inbound: Managed;
  stop(): Promise<void>;
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
async function startTrellisEdge(o: IngressTlsOptions, name: string, root: string, certFile: string, keyFile: string, ca: string): Promise<Edge> {
  const tdir = path.join(o.dir, `ingress-${name}`);
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
  const trellis = path.join(root, 'bin', 'trellis.js');
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
    // --cpu-prof DIR (the bench's): each proxy writes a V8 CPU profile there when it stops.
    const proxy = (label: string, args: string[], kind: 'sidecar' | 'gateway', service: string, id: string): Managed =>
      o.procs.start(
        label,
        process.execPath,
        [
          ...PROXY_NODE_FLAGS,
          ...cpuProfFlags(`ingress-${name}-${kind}`),
          trellis,
          'proxy',
          ...args,
          '--control',
          control,
          '--admin',
          '127.0.0.1:0',
          '--access-log',
          'off',
        ],
        tdir,
        {
          [CREDENTIAL_ENV]: mintCredential(secret, { kind, service, id }),
        },
      );
    await new Promise((r) => setTimeout(r, 500));
    const inbound = proxy(
      `${name} proxy (inbound, upstream-0)`,
      ['--service', 'upstream', '--id', 'upstream-0', '--app', `127.0.0.1:${o.upstreamPort}`, '--inbound', `127.0.0.1:${inboundPort}`],
      'sidecar',
      'upstream',
      'upstream-0',
    );
    started.push(inbound);
    const edge = proxy(
      `${name} proxy (gateway edge)`,
      ['--gateway', '--service', 'edge', '--id', 'edge', '--gateway-port', `8443=127.0.0.1:${edgePort}`],
      'gateway',
      'edge',
      'edge',
    );
    started.push(edge);
    await waitForTls(edgePort, ca, started, 20_000);
    return { name, port: edgePort, edge, inbound, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The nginx edge: TLS terminated with the same certificate, then mutual TLS to an nginx
 * inbound in front of the upstream; with `o.relay`, the bare Node TLS relay as a second
 * edge in front of the same inbound (stopped with the nginx edge).
 */
async function startNginxEdge(o: IngressTlsOptions, certFile: string, keyFile: string, ca: string): Promise<{ nginx: Edge; relay?: Edge }> {
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
    const inbound = start('nginx-ingress-inbound', nginxTlsServer('inbound', inner, o.upstreamPort, mtls));
    started.push(inbound);
    const edge = start(
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
    );
    started.push(edge);
    await waitForTls(edgePort, ca, started, 15_000);
    const nginx: Edge = { name: 'nginx', port: edgePort, edge, inbound, stop };
    if (o.relay !== true) return { nginx };
    const relayPort = await freePort();
    const script = path.join(o.repoRoot, 'dist', 'bench', 'tls-relay.js');
    const relay = o.procs.start(
      'node tls relay (ingress)',
      process.execPath,
      [
        script,
        ...['--port', String(relayPort), '--cert', certFile, '--key', keyFile, '--upstream-port', String(inner)],
        ...['--client-cert', mtls.clientCert, '--client-key', mtls.clientKey, '--ca', mtls.ca, '--servername', INBOUND_NAME],
      ],
      ndir,
    );
    started.push(relay);
    await waitForTls(relayPort, ca, started, 15_000);
    return { nginx, relay: { name: 'relay', port: relayPort, edge: relay, inbound, stop: async () => {} } };
  } catch (e) {
    await stop();
    throw e;
  }
}

function wrkAt(o: IngressTlsOptions, port: number, durationS: number): ReturnType<typeof runWrk> {
  const url = `https://127.0.0.1:${port}/`;
  return runWrk({ wrk: o.bins.wrk, url, threads: 1, connections: o.connections, durationS, timeoutS: 5, headers: { Host: HOST } });
}

/** One keep-alive max-rate run of `e`, with the CPU its edge and inbound processes spent per request. */
async function keepAliveRound(o: IngressTlsOptions, e: Edge): Promise<IngressRound> {
  const groups = [e.edge.child.pid ?? -1, e.inbound.child.pid ?? -1];
  const before = sampleGroups(groups);
  const r = await wrkAt(o, e.port, o.durationS);
  const after = sampleGroups(groups);
  const errors = r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
  const cpu = (pid: number): number | undefined => {
    const s = cpuSecondsPer1k(before?.get(pid), after?.get(pid), r.requests);
    return s === undefined ? undefined : Math.round(s * 1e6) / 1e3;
  };
  const edgeCpu = cpu(groups[0]!);
  const inboundCpu = cpu(groups[1]!);
  return {
    rps: r.rps,
    p99Us: r.latencyUs.p99,
    errors,
    ...(edgeCpu !== undefined ? { edgeCpuMsPer1k: edgeCpu } : {}),
    ...(inboundCpu !== undefined ? { inboundCpuMsPer1k: inboundCpu } : {}),
  };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!;
};
const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 1000) / 1000 : 0);

export async function runIngressTls(o: IngressTlsOptions): Promise<IngressTlsResult> {
  const ca = await makeLocalCa('bench local HTTPS CA');
  const cert = await issueServerCertificate(ca, { dnsNames: [HOST], ips: ['127.0.0.1'] });
  const certFile = path.join(o.dir, 'ingress-localhost.pem');
  const keyFile = path.join(o.dir, 'ingress-localhost.key');
  writeFileSync(certFile, cert.cert);
  writeFileSync(keyFile, cert.key, { mode: 0o600 });
  const edges: Edge[] = [];
  try {
    edges.push(await startTrellisEdge(o, 'trellis', o.repoRoot, certFile, keyFile, ca.cert));
    if (o.baselineRoot !== undefined) edges.push(await startTrellisEdge(o, 'baseline', o.baselineRoot, certFile, keyFile, ca.cert));
    const { nginx: nginxEdge, relay: relayEdge } = await startNginxEdge(o, certFile, keyFile, ca.cert);
    edges.push(nginxEdge);
    if (relayEdge !== undefined) edges.push(relayEdge);
    const rounds = new Map<string, IngressRound[]>(edges.map((e) => [e.name, []]));
    const loadBefore = os.loadavg()[0]!;
    if (o.warmupS > 0) for (const e of edges) await wrkAt(o, e.port, o.warmupS);
    for (let i = 1; i <= o.rounds; i++) {
      // trellis and its baseline trade places every other round, as in the full run's A/B.
      const order = i % 2 === 0 && o.baselineRoot !== undefined ? [edges[1]!, edges[0]!, ...edges.slice(2)] : edges;
      for (const e of order) {
        o.log(`ingress-tls: ${e.name}, keep-alive max rate, round ${i}/${o.rounds}, ${o.durationS}s`);
        rounds.get(e.name)!.push(await keepAliveRound(o, e));
      }
    }
    const load = [loadBefore, os.loadavg()[0]!].map((l) => Math.round(l * 100) / 100) as [number, number];
    const results = new Map<string, IngressEdgeResult>();
    for (const e of edges) {
      o.log(`ingress-tls: ${e.name}, new TLS connections (${o.newConnections} at once), ${o.durationS}s`);
      const fresh = await runNewTlsConnections(e.port, ca.cert, o.newConnections, o.durationS * 1000, o.warmupS * 1000);
      const rs = rounds.get(e.name)!;
      const mid = rs.find((r) => r.rps === median(rs.map((x) => x.rps)))!;
      results.set(e.name, { ...mid, rounds: rs, newConnections: fresh });
    }
    const perRound = (a: string, b: string): number => {
      const ra = rounds.get(a)!;
      const rb = rounds.get(b)!;
      return median(ra.map((r, k) => ratio(r.rps, rb[k]?.rps ?? 0)));
    };
    const trellis = results.get('trellis')!;
    const nginx = results.get('nginx')!;
    const baseline = results.get('baseline');
    const relay = results.get('relay');
    return {
      trellis,
      nginx,
      ...(baseline !== undefined ? { baseline, baselineThroughputRatio: perRound('trellis', 'baseline') } : {}),
      ...(relay !== undefined ? { relay } : {}),
      throughputRatio: perRound('trellis', 'nginx'),
      newConnectionRatio: ratio(trellis.newConnections.perSecond, nginx.newConnections.perSecond),
      load,
    };
  } finally {
    await Promise.all(edges.map((e) => e.stop()));
  }
}

/** The lines the bench prints for this scenario. */
export function formatIngressTls(r: IngressTlsResult): string {
  const ms = (v: number | undefined): string => (v === undefined ? '?' : v.toFixed(1));
  const cpu = (e: IngressRound): string => `${ms(e.edgeCpuMsPer1k)} + ${ms(e.inboundCpuMsPer1k)}`;
  const edge = (name: string, e: IngressEdgeResult): string =>
    `  ${name.padEnd(8)} keep-alive ${Math.round(e.rps)} rps (p99 ${(e.p99Us / 1000).toFixed(2)} ms${e.errors ? `, ${e.errors} errors` : ''}; ` +
    `CPU ms per 1k requests, edge + inbound: ${e.rounds.map(cpu).join(', ')}); ` +
    `new TLS connections ${Math.round(e.newConnections.perSecond)}/s (p99 ${(e.newConnections.latencyUs.p99 / 1000).toFixed(2)} ms${e.newConnections.errors ? `, ${e.newConnections.errors} errors` : ''})`;
  const medianCpu = (e: IngressEdgeResult): number => median(e.rounds.map((x) => x.edgeCpuMsPer1k ?? 0));
  return [
    `ingress TLS: client ═TLS═► edge ═mTLS═► inbound → upstream (same localhost certificate at both edges; load ${r.load[0]} → ${r.load[1]} on ${os.cpus().length} cores)`,
    edge('trellis', r.trellis),
    ...(r.baseline !== undefined ? [edge('baseline', r.baseline)] : []),
    edge('nginx', r.nginx),
    ...(r.relay !== undefined ? [edge('relay', r.relay)] : []),
    `  trellis/nginx: max throughput ${r.throughputRatio.toFixed(3)} (target ≥ 0.6), new TLS connections ${r.newConnectionRatio.toFixed(3)}, ` +
      `edge CPU per request ${ratio(medianCpu(r.trellis), medianCpu(r.nginx)).toFixed(2)}x`,
    ...(r.relay !== undefined
      ? [
          `  edge CPU per request: relay/nginx ${ratio(medianCpu(r.relay), medianCpu(r.nginx)).toFixed(2)}x (what Node's TLS sockets cost), ` +
            `trellis/relay ${ratio(medianCpu(r.trellis), medianCpu(r.relay)).toFixed(2)}x (what the gateway's own work adds)`,
        ]
      : []),
    ...(r.baseline !== undefined && r.baselineThroughputRatio !== undefined
      ? [
          `  trellis/baseline: max throughput ${r.baselineThroughputRatio.toFixed(3)}, edge CPU per request ${ratio(medianCpu(r.trellis), medianCpu(r.baseline)).toFixed(3)}x`,
        ]
      : []),
    '',
  ].join('\n');
}
