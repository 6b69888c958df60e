// The control plane at scale (issue 17): N simulated proxies speaking the real stream
// protocol to a real `trellis control` process, in a mesh of S services where each calls
// `calls` others. It measures what a mesh of that size costs the control plane:
//
// - registration: from the first hello until no snapshot has gone out for `quietMs`
//   (the mesh settled: every instance registered, health-checked and pushed), the
//   snapshots each proxy received, and the bytes sent to all of them;
// - a route change fan-out: one service's route edited in the mesh's routes file (as a
//   user's editor writes it), then the time until each proxy that calls that service has
//   a snapshot with the change, p50 and the last one (every simulated proxy ACKs a
//   snapshot the moment it reads it, so the last arrival is the last ACK);
// - the control plane's RSS (max sampled) and CPU seconds, and the worst latency of a
//   `GET /healthz` sent every 50 ms throughout: an answer late by X ms means the control
//   plane's event loop was blocked for about X ms; and its own event-loop delay metric
//   (the longest block, read from /metrics every second);
// - certificates: every simulated proxy asks for its workload certificate with a CSR
//   after its hello, as a real one does, so the CA's signing is part of registration;
// - false health transitions: the control plane's count of instances it marked
//   unhealthy, where every app answers 200 (any such transition is a false one).
//
// Every simulated proxy has its own loopback address (127.1.x.y, which Linux routes to
// the host without any set-up), all served by one HTTP server bound to 0.0.0.0 that
// answers every health check 200, so health checks cost the control plane what real
// ones do. Bounded: each phase has a deadline, and everything is closed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { ADMIN_TOKEN_ENV, adminHeaders, newAdminToken } from '../src/security/admin-token.js';
import { BOOTSTRAP_SECRET_ENV, mintCredential, newBootstrapSecret } from '../src/security/bootstrap-credential.js';
import { makeCsr } from '../src/security/x509.js';
import { cpuProfFlags, freePort } from './targets.js';

export interface ScaleOptions {
  readonly repoRoot: string;
  readonly dir: string;
  /** Simulated proxies (instances), spread evenly over the services. */
  readonly proxies: number;
  readonly services: number;
  /** Upstreams each service calls (the next `calls` services, wrapping). */
  readonly calls: number;
  /** A phase ends when nothing was sent to any proxy for this long. */
  readonly quietMs: number;
  /** A phase that has not settled by then is reported as such. */
  readonly phaseTimeoutMs: number;
  readonly log: (msg: string) => void;
}

export interface ScaleResult {
  readonly proxies: number;
  readonly services: number;
  readonly calls: number;
  /** Proxies whose stream opened and who got a first snapshot. */
  readonly connected: number;
  /** First hello to the last snapshot before the quiet period; undefined: did not settle. */
  readonly registrationMs: number | undefined;
  readonly snapshotsPerProxy: { readonly mean: number; readonly max: number };
  readonly registrationMb: number;
  /** Route edit to its arrival at the proxies that call the edited service. */
  readonly fanOut: {
    readonly callers: number;
    readonly reached: number;
    readonly p50Ms: number | undefined;
    readonly allMs: number | undefined;
    readonly mb: number;
  };
  readonly controlRssMb: number | undefined;
  readonly controlCpuS: number | undefined;
  /** Worst `/healthz` answer time during the run. */
  readonly maxHealthzMs: number;
  /** The longest event-loop block the control plane's own metric saw (undefined: never read). */
  readonly maxLoopDelayMs?: number | undefined;
  /** Workload certificates the simulated proxies received, and CSRs refused. */
  readonly certificates?: { readonly issued: number; readonly refused: number };
  /** Instances the control plane marked unhealthy although every app answered 200. */
  readonly falseHealthTransitions?: number | undefined;
  readonly error?: string;
}

/** The messages a proxy ACKs: a full snapshot, or a delta (issue 17). */
const SNAPSHOT_PREFIX = '{"type":"snapshot"';
const DELTA_PREFIX = '{"type":"delta"';
const CERTIFICATE_PREFIX = '{"type":"certificate"';
const CSR_REFUSED_PREFIX = '{"type":"csr-refused"';

/** One simulated proxy: a stream, the snapshots it got, and when the marker arrived. */
export class SimProxy {
  snapshots = 0;
  bytes = 0;
  /** 1: its certificate came; -1: its CSR was refused; 0: waiting. */
  certificate = 0;
  lastSnapshotAt = 0;
  markerAt = 0;
  #partial = '';
  #marker = '';
  #markerFrom = 0;

  constructor(
    readonly id: string,
    readonly service: string,
    readonly socket: net.Socket,
    onSnapshot: () => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.bytes += Buffer.byteLength(chunk);
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() ?? '';
      for (const line of parts) {
        // Only what a proxy must read to answer: the version, for the ACK. Parsing every
        // snapshot here would make the simulator the bottleneck, not the control plane.
        if (line.startsWith(CERTIFICATE_PREFIX) || line.startsWith(CSR_REFUSED_PREFIX)) {
          this.certificate = line.startsWith(CERTIFICATE_PREFIX) ? 1 : -1;
          onSnapshot();
          continue;
        }
        if (!line.startsWith(SNAPSHOT_PREFIX) && !line.startsWith(DELTA_PREFIX)) continue;
        const version = /"version":(\d+)/.exec(line.slice(0, 64))?.[1];
        if (version === undefined) continue;
        this.snapshots++;
        this.lastSnapshotAt = performance.now();
        if (this.#marker !== '' && this.markerAt === 0 && this.lastSnapshotAt >= this.#markerFrom && line.includes(this.#marker)) {
          this.markerAt = this.lastSnapshotAt;
        }
        socket.write(`{"type":"ack","version":${version}}\n`);
        onSnapshot();
      }
    });
  }

  /** From now on, note when a snapshot containing `marker` arrives. */
  watch(marker: string): void {
    this.#marker = marker;
    this.#markerFrom = performance.now();
    this.markerAt = 0;
  }
}

function services(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `svc-${i}`);
}

function callsOf(i: number, n: number, calls: number): string[] {
  return Array.from({ length: Math.min(calls, n - 1) }, (_, k) => `svc-${(i + 1 + k) % n}`);
}

function meshYaml(o: ScaleOptions): string {
  const names = services(o.services);
  const lines = ['apiVersion: trellis.dev/v1alpha1', 'kind: Mesh', 'metadata:', '  name: scale', 'spec:', '  include: [routes.yaml]', '  services:'];
  for (const [i, name] of names.entries()) {
    lines.push(
      `    - name: ${name}`,
      '      protocol: http',
      `      upstreams: [${callsOf(i, o.services, o.calls).join(', ')}]`,
      '      health:',
      '        http: { path: /healthz }',
      '        interval: 2s',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One HTTPRoute per service; the edited one matches a header carrying `marker`. */
function routesYaml(o: ScaleOptions, marker: string): string {
  return services(o.services)
    .map(
      (name, i) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${name}-route
spec:
  parentRefs:
    - { group: "", kind: Service, name: ${name} }
  rules:
    - matches:
        - path: { type: PathPrefix, value: /api }
${i === 0 ? `          headers: [{ name: x-scale-marker, value: ${marker} }]\n` : ''}      backendRefs:
        - { name: ${name}, port: 80 }
`,
    )
    .join('---\n');
}

function cpuSecondsOf(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
    const ticks = Number(f?.[11]) + Number(f?.[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

function rssMbOf(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Opens a proxy stream from `localAddress`, sends `hello` and then `after` (a CSR line, or ''). */
export function openStream(control: number, hello: object, localAddress: string, after: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: control,
      path: '/v1/stream',
      localAddress,
      headers: { connection: 'Upgrade', upgrade: 'trellis-stream' },
      agent: false,
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('stream upgrade timed out'));
    }, 30_000);
    req.on('upgrade', (_res, socket: net.Socket, head) => {
      clearTimeout(timer);
      if (head.length > 0) socket.unshift(head);
      socket.on('error', () => {});
      socket.write(`${JSON.stringify(hello)}\n${after}`);
      resolve(socket);
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      reject(new Error(`stream answered ${res.statusCode}`));
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

/** The control plane's /metrics text ('' when it did not answer). */
export function scrape(control: number, token: string): Promise<string> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port: control, path: '/metrics', headers: adminHeaders(token), agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(res.statusCode === 200 ? body : ''));
      })
      .on('error', () => resolve(''));
  });
}

/** The sum of a metric's samples whose labels include every one of `labels` (undefined: no sample). */
export function metricSum(text: string, name: string, labels: readonly string[] = []): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!labels.every((l) => line.includes(l))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

function percentile(xs: readonly number[], p: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** Resolves once `ready()` and nothing was sent for `quietMs` (true), or at `deadline` (false). */
async function quiet(lastActivity: () => number, quietMs: number, deadlineMs: number, ready: () => boolean = () => true): Promise<boolean> {
  const end = performance.now() + deadlineMs;
  for (;;) {
    if (performance.now() - lastActivity() >= quietMs && ready()) return true;
    if (performance.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs the scenario for one size. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const dir = path.join(o.dir, `scale-${o.proxies}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'mesh.yaml'), meshYaml(o));
  writeFileSync(path.join(dir, 'routes.yaml'), routesYaml(o, 'before'));
  const secret = newBootstrapSecret();
  const adminToken = newAdminToken();
  // A CSR asks for nothing (the CA names the certificate after the hello's credential),
  // so one CSR serves every simulated proxy: the bench pays for one key, the CA signs N.
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csrLine = `${JSON.stringify({ type: 'csr', id: 1, csr: await makeCsr(keys) })}\n`;
  const cpPort = await freePort();
  const appPort = await freePort();
  // Every instance's app, inbound and admin address: 127.1.x.y:appPort, one server.
  const apps = http.createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  apps.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => apps.listen(appPort, '0.0.0.0', r));
  let cp: ChildProcess | undefined;
  const sims: SimProxy[] = [];
  let lastActivity = performance.now();
  let maxHealthzMs = 0;
  let maxRss = 0;
  let healthz: NodeJS.Timeout | undefined;
  let rssTimer: NodeJS.Timeout | undefined;
  let loopTimer: NodeJS.Timeout | undefined;
  let maxLoopDelayMs: number | undefined;
  const base = {
    proxies: o.proxies,
    services: o.services,
    calls: o.calls,
  };
  try {
    cp = spawn(
      process.execPath,
      [
        ...cpuProfFlags('control'),
        path.join(o.repoRoot, 'bin', 'trellis.js'),
        'control',
        '--config',
        path.join(dir, 'mesh.yaml'),
        '--admin',
        `127.0.0.1:${cpPort}`,
      ],
      {
        cwd: dir,
        stdio: ['ignore', 'ignore', 'ignore'],
        env: { ...process.env, [BOOTSTRAP_SECRET_ENV]: secret, [ADMIN_TOKEN_ENV]: adminToken },
      },
    );
    const pid = cp.pid ?? -1;
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((r) => {
        http
          .get({ host: '127.0.0.1', port: cpPort, path: '/healthz', agent: false }, (res) => {
            res.resume();
            r(res.statusCode === 200);
          })
          .on('error', () => r(false));
      });
      if (ok) break;
      if (i > 100) throw new Error('the control plane did not answer /healthz within 10 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const healthzAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let inFlight = false;
    healthz = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      const t0 = performance.now();
      http
        .get({ host: '127.0.0.1', port: cpPort, path: '/healthz', agent: healthzAgent }, (res) => {
          res.resume();
          res.on('end', () => {
            maxHealthzMs = Math.max(maxHealthzMs, performance.now() - t0);
            inFlight = false;
          });
        })
        .on('error', () => (inFlight = false));
    }, 50);
    rssTimer = setInterval(() => (maxRss = Math.max(maxRss, rssMbOf(pid) ?? 0)), 250);
    // Each scrape reads the longest block since the one before (and resets it).
    const readLoopDelay = async (): Promise<void> => {
      const max = metricSum(await scrape(cpPort, adminToken), 'trellis_control_event_loop_delay_seconds', ['quantile="1"']);
      if (max !== undefined) maxLoopDelayMs = Math.max(maxLoopDelayMs ?? 0, max * 1000);
    };
    await readLoopDelay(); // from here on: the start-up's own block is not the run's
    maxLoopDelayMs = undefined;
    loopTimer = setInterval(() => void readLoopDelay(), 1000);
    const cpuBefore = cpuSecondsOf(pid);

    // Registration: every proxy connects (64 at a time, as a rolling start would), sends its hello.
    o.log(`scale ${o.proxies}: registering ${o.proxies} simulated proxies (${o.services} services, each calling ${o.calls})`);
    const t0 = performance.now();
    const names = services(o.services);
    let next = 0;
    const connectOne = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= o.proxies) return;
        const service = names[i % o.services]!;
        const id = `${service}-${i}`;
        // 127.1.x.1-250: a last octet of 256 is no address (the first run lost every 256th proxy).
        const host = `127.1.${Math.floor(i / 250) % 256}.${(i % 250) + 1}`;
        const hp = { host, port: appPort };
        const proxy = { id, service, version: 'default', kind: 'sidecar' as const, app: hp, inbound: hp, admin: hp, upstreams: [], pid: 100_000 + i };
        const hello = { type: 'hello', proxy, credential: mintCredential(secret, { kind: 'sidecar', service, id }) };
        try {
          const socket = await openStream(cpPort, hello, host, csrLine);
          sims.push(new SimProxy(id, service, socket, () => (lastActivity = performance.now())));
        } catch (e) {
          o.log(`scale ${o.proxies}: ${id} could not connect: ${(e as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, connectOne));
    // Settled: every proxy has its first snapshot, and nothing more has been sent for a while.
    const settled = await quiet(
      () => lastActivity,
      o.quietMs,
      o.phaseTimeoutMs,
      () => sims.length > 0 && sims.every((s) => s.snapshots > 0 && s.certificate !== 0),
    );
    const connected = sims.filter((s) => s.snapshots > 0).length;
    const registrationMs = settled ? Math.max(...sims.map((s) => s.lastSnapshotAt)) - t0 : undefined;
    const counts = sims.map((s) => s.snapshots);
    const registrationBytes = sims.reduce((a, s) => a + s.bytes, 0);
    o.log(
      `scale ${o.proxies}: ${settled ? `settled in ${((registrationMs ?? 0) / 1000).toFixed(1)} s` : `not settled after ${o.phaseTimeoutMs / 1000} s`}, ` +
        `${connected} proxies with a snapshot, ${(registrationBytes / 1e6).toFixed(1)} MB sent`,
    );

    // Fan-out: one route edit, watched at the proxies that call svc-0.
    const callers = new Set(names.filter((_, i) => callsOf(i, o.services, o.calls).includes('svc-0')));
    const watchers = sims.filter((s) => callers.has(s.service));
    const marker = `m${Date.now().toString(36)}`;
    for (const s of watchers) s.watch(marker);
    const bytesBefore = sims.reduce((a, s) => a + s.bytes, 0);
    const editAt = performance.now();
    writeFileSync(path.join(dir, 'routes.yaml'), routesYaml(o, marker));
    const end = editAt + o.phaseTimeoutMs;
    while (performance.now() < end && watchers.some((s) => s.markerAt === 0)) await new Promise((r) => setTimeout(r, 20));
    await quiet(() => lastActivity, Math.min(o.quietMs, 1000), 10_000);
    const arrivals = watchers.filter((s) => s.markerAt > 0).map((s) => s.markerAt - editAt);
    const cpuAfter = cpuSecondsOf(pid);
    clearInterval(loopTimer);
    const metrics = await scrape(cpPort, adminToken);
    const loopNow = metricSum(metrics, 'trellis_control_event_loop_delay_seconds', ['quantile="1"']);
    if (loopNow !== undefined) maxLoopDelayMs = Math.max(maxLoopDelayMs ?? 0, loopNow * 1000);
    const falseHealthTransitions = metrics === '' ? undefined : (metricSum(metrics, 'trellis_control_health_transitions_total', ['to="unhealthy"']) ?? 0);
    const certificates = { issued: sims.filter((s) => s.certificate === 1).length, refused: sims.filter((s) => s.certificate === -1).length };
    const fanOut = {
      callers: watchers.length,
      reached: arrivals.length,
      p50Ms: percentile(arrivals, 50),
      allMs: arrivals.length === watchers.length && arrivals.length > 0 ? Math.max(...arrivals) : undefined,
      mb: (sims.reduce((a, s) => a + s.bytes, 0) - bytesBefore) / 1e6,
    };
    o.log(
      `scale ${o.proxies}: route change reached ${fanOut.reached}/${fanOut.callers} callers, p50 ${fanOut.p50Ms?.toFixed(0) ?? '-'} ms, all ${fanOut.allMs?.toFixed(0) ?? '-'} ms`,
    );
    return {
      ...base,
      connected,
      registrationMs,
      snapshotsPerProxy: { mean: counts.length > 0 ? counts.reduce((a, b) => a + b, 0) / counts.length : 0, max: counts.length > 0 ? Math.max(...counts) : 0 },
      registrationMb: registrationBytes / 1e6,
      fanOut,
      controlRssMb: maxRss > 0 ? maxRss : undefined,
      controlCpuS: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
      maxHealthzMs,
      maxLoopDelayMs,
      certificates,
      falseHealthTransitions,
    };
  } catch (e) {
    return {
      ...base,
      connected: sims.length,
      registrationMs: undefined,
      snapshotsPerProxy: { mean: 0, max: 0 },
      registrationMb: 0,
      fanOut: { callers: 0, reached: 0, p50Ms: undefined, allMs: undefined, mb: 0 },
      controlRssMb: undefined,
      controlCpuS: undefined,
      maxHealthzMs,
      error: (e as Error).message,
    };
  } finally {
    clearInterval(healthz);
    clearInterval(rssTimer);
    clearInterval(loopTimer);
    for (const s of sims) s.socket.destroy();
    if (cp && cp.exitCode === null) {
      cp.kill('SIGTERM');
      // The grace timer is cleared once the control plane exits: a pending one would keep
      // the caller's process alive for its whole 3 s.
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((r) => cp?.once('exit', r)), new Promise((r) => (grace = setTimeout(r, 3000)))]);
      clearTimeout(grace);
      if (cp.exitCode === null && cp.signalCode === null) cp.kill('SIGKILL');
    }
    apps.closeAllConnections();
    await new Promise((r) => apps.close(r));
  }
}

/** The scale table. */
export function formatScale(results: readonly ScaleResult[]): string {
  const header = [
    'proxies',
    'registration',
    'pushes/proxy',
    'certs',
    'MB sent',
    'route change p50',
    'all callers',
    'CP RSS',
    'CP CPU',
    'false unhealthy',
    'max loop delay',
    'max /healthz',
  ];
  const rows = results.map((r) => {
    if (r.error) return [String(r.proxies), `failed: ${r.error}`];
    return [
      String(r.proxies),
      r.registrationMs === undefined ? 'not settled' : `${(r.registrationMs / 1000).toFixed(1)} s`,
      `${r.snapshotsPerProxy.mean.toFixed(1)} (max ${r.snapshotsPerProxy.max})`,
      r.certificates === undefined ? '-' : `${r.certificates.issued}${r.certificates.refused > 0 ? ` (${r.certificates.refused} refused)` : ''}`,
      r.registrationMb.toFixed(1),
      r.fanOut.p50Ms === undefined ? '-' : `${r.fanOut.p50Ms.toFixed(0)} ms`,
      r.fanOut.allMs === undefined ? `${r.fanOut.reached}/${r.fanOut.callers} reached` : `${r.fanOut.allMs.toFixed(0)} ms (${r.fanOut.callers})`,
      r.controlRssMb === undefined ? '-' : `${r.controlRssMb.toFixed(0)} MB`,
      r.controlCpuS === undefined ? '-' : `${r.controlCpuS.toFixed(1)} s`,
      r.falseHealthTransitions === undefined ? '-' : String(r.falseHealthTransitions),
      r.maxLoopDelayMs === undefined ? '-' : `${r.maxLoopDelayMs.toFixed(0)} ms`,
      `${r.maxHealthzMs.toFixed(0)} ms`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r.length === 2 && i > 0 ? 0 : (r[i] ?? '').length))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const s = results[0];
  return [
    `control plane at scale: simulated proxies on the real stream protocol${s ? `, ${s.services} services, each calling ${s.calls}` : ''}`,
    '(registration: first hello to the last snapshot before a quiet period; pushes: snapshots and deltas a proxy was sent;',
    'route change: one route edited in the',
    "routes file, until every proxy that calls that service has it; certs: workload certificates issued to the proxies' CSRs;",
    "false unhealthy: instances marked unhealthy although every app answered; max loop delay: the control plane's own",
    "event-loop delay metric, its longest block; max /healthz: the control plane's worst answer time to a probe every 50 ms)",
    line(header),
    ...rows.map(line),
  ].join('\n');
}
