// Which hop of the mesh is the bottleneck: the sidecars' Prometheus counters, read
// before and after each step of a sweep, turned into a per-service account of the step
// (time inside the service, its error rate, the CPU of its sidecar and app) and, over
// the sweep, the name of the service that saturates first.
//
// Everything here is pure (text in, numbers out) so it is tested on fixed inputs; the
// reading of the mesh (control plane, each proxy's /metrics) is hop-scrape.ts, the
// parsing of the text telemetry/prometheus-text.ts.
//
// Time inside a service is what its sidecars' inbound listeners measured (head in →
// response out: the app and everything it waited for) minus what the same sidecars'
// outbound listeners measured for the app's own calls. What is left is the app's own
// work, its queueing, and its inbound sidecar's cost.
//
// A raw TCP service (Postgres, Redis) has no requests a proxy can time: its callers'
// time inside includes waiting on it. It still appears as a hop while its sidecar has
// connections, with its sidecar's and app's CPU, so a database running out of CPU can
// be named as the bottleneck.
import { parsePrometheus } from '../telemetry/prometheus-text.js';

/** The counters of one proxy that the hop account uses. */
export interface ProxyCounters {
  readonly proxyId: string;
  /** The mesh service the proxy serves (a gateway's own name for a gateway). */
  readonly service: string;
  /** The proxy process's CPU seconds (user + system). */
  readonly cpuSeconds?: number;
  /** The app's CPU seconds, where the sidecar can tell (Linux). */
  readonly appCpuSeconds?: number;
  /** HTTP exchanges by direction, destination and status: count and summed duration, seconds. */
  readonly http: readonly HttpCounter[];
  /** Inbound TCP connections: opened in total, and open now (a gauge, never a delta). */
  readonly tcpOpened?: number;
  readonly tcpActive?: number;
}

export interface HttpCounter {
  readonly direction: string;
  readonly destination: string;
  readonly status: string;
  readonly count: number;
  readonly sum: number;
}

export const PROXY_CPU_METRIC = 'trellis_proxy_process_cpu_seconds_total';
export const APP_CPU_METRIC = 'trellis_proxy_app_cpu_seconds_total';
const TCP_OPENED_METRIC = 'trellis_tcp_connections_total';
const TCP_ACTIVE_METRIC = 'trellis_tcp_connections_active';
const WANTED = new Set([
  'trellis_http_request_duration_seconds_sum',
  'trellis_http_request_duration_seconds_count',
  PROXY_CPU_METRIC,
  APP_CPU_METRIC,
  TCP_OPENED_METRIC,
  TCP_ACTIVE_METRIC,
]);

/** Reads one proxy's /metrics text into its counters. */
export function proxyCounters(proxyId: string, service: string, text: string): ProxyCounters {
  const samples = parsePrometheus(text, (n) => WANTED.has(n));
  const http = new Map<string, { direction: string; destination: string; status: string; count: number; sum: number }>();
  let cpuSeconds: number | undefined;
  let appCpuSeconds: number | undefined;
  let tcpOpened: number | undefined;
  let tcpActive: number | undefined;
  for (const s of samples) {
    if (s.name === PROXY_CPU_METRIC) cpuSeconds = (cpuSeconds ?? 0) + s.value;
    else if (s.name === APP_CPU_METRIC) appCpuSeconds = (appCpuSeconds ?? 0) + s.value;
    else if (s.name === TCP_OPENED_METRIC || s.name === TCP_ACTIVE_METRIC) {
      if (s.labels.direction !== 'inbound') continue;
      if (s.name === TCP_OPENED_METRIC) tcpOpened = (tcpOpened ?? 0) + s.value;
      else tcpActive = (tcpActive ?? 0) + s.value;
    } else {
      const direction = s.labels.direction ?? '';
      const destination = s.labels.destination ?? '';
      const status = s.labels.status ?? '';
      const key = `${direction}\0${destination}\0${status}`;
      let c = http.get(key);
      if (!c) {
        c = { direction, destination, status, count: 0, sum: 0 };
        http.set(key, c);
      }
      if (s.name.endsWith('_count')) c.count += s.value;
      else c.sum += s.value;
    }
  }
  return { proxyId, service, cpuSeconds, appCpuSeconds, http: [...http.values()], tcpOpened, tcpActive };
}

/** Every proxy's counters at one moment. */
export interface MeshCounters {
  /** Monotonic ms (performance.now()). */
  readonly at: number;
  readonly proxies: readonly ProxyCounters[];
}

/** A counter's increase; a value lower than before means the process restarted (counted from 0). */
function increase(before: number | undefined, after: number | undefined): number | undefined {
  if (after === undefined) return undefined;
  if (before === undefined || after < before) return after;
  return after - before;
}

/**
 * What each proxy counted between two readings. A proxy missing from `before` (it
 * started during the step) counts from zero; one missing from `after` is left out.
 */
export function countersDelta(before: MeshCounters, after: MeshCounters): MeshCounters {
  const prior = new Map(before.proxies.map((p) => [p.proxyId, p]));
  const proxies = after.proxies.map((a): ProxyCounters => {
    const b = prior.get(a.proxyId);
    const bHttp = new Map((b?.http ?? []).map((h) => [`${h.direction}\0${h.destination}\0${h.status}`, h]));
    const http = a.http
      .map((h) => {
        const o = bHttp.get(`${h.direction}\0${h.destination}\0${h.status}`);
        const reset = o !== undefined && h.count < o.count;
        return { ...h, count: o && !reset ? h.count - o.count : h.count, sum: o && !reset ? Math.max(0, h.sum - o.sum) : h.sum };
      })
      .filter((h) => h.count > 0);
    return {
      proxyId: a.proxyId,
      service: a.service,
      http,
      cpuSeconds: increase(b?.cpuSeconds, a.cpuSeconds),
      appCpuSeconds: increase(b?.appCpuSeconds, a.appCpuSeconds),
      tcpOpened: increase(b?.tcpOpened, a.tcpOpened),
      tcpActive: a.tcpActive,
    };
  });
  return { at: after.at, proxies };
}

/** CPU of this machine over a step, in cores. */
export interface MachineCpu {
  readonly cores: number;
  /** Cores busy (all processes). */
  readonly busyCores: number;
  /** Of those, the load client's own process. */
  readonly clientCores: number;
}

/** A machine this busy (share of its cores) leaves every process waiting for CPU. */
export const MACHINE_SATURATED = 0.85;

/** The call graph the account needs: which services exist and whom each calls. */
export interface HopTopology {
  /** Services of the mesh, with their declared upstreams; `protocol` defaults to http. */
  readonly services: readonly { readonly name: string; readonly upstreams: readonly string[]; readonly protocol?: 'http' | 'tcp' }[];
  /** The service the load asks for. */
  readonly target: string;
  /** The proxy service the load enters by: the --from service, or the ingress gateway. */
  readonly entry: string;
}

/** One service in one step. */
export interface ServiceHop {
  readonly service: string;
  /**
   * `service`: time inside the service. `entry`: the proxy the load enters by (the
   * --from service's sidecar or the ingress gateway): its time is end-to-end minus the
   * target's inbound time, i.e. the entry proxy and the hop to the target's sidecar.
   * `tcp`: a raw TCP service; `requests` counts connections (opened in the step, or
   * open at its end), and there is no time inside or error rate to tell.
   */
  readonly role: 'service' | 'entry' | 'tcp';
  /** Inbound requests its sidecars handled in the step (connections, for `tcp`). */
  readonly requests: number;
  /** Time inside the service per inbound request, ms (never below 0). */
  readonly insideMs: number;
  /** Its time inside as a share of the end-to-end time of the step's requests (0..1, may exceed 1 for fan-out). */
  readonly share: number | undefined;
  /** Share of its inbound requests answered outside 2xx/3xx (or not answered). */
  readonly errorRate: number;
  /** Its sidecars' CPU, cores (CPU seconds per second of the step). */
  readonly sidecarCores: number | undefined;
  /** Its app's CPU, cores, when the sidecars report it (Linux). */
  readonly appCores: number | undefined;
  /** The busiest single process of the service (instances add up above; one Node process saturates at 1 core). */
  readonly peak: { readonly process: 'app' | 'sidecar'; readonly proxyId: string; readonly cores: number } | undefined;
}

/** The account of one step. */
export interface HopStep {
  /** Wall time between the two readings, seconds. */
  readonly seconds: number;
  /** Mean end-to-end time of a request, ms, as the entry proxy measured it (or the client, when it did not). */
  readonly e2eMs: number | undefined;
  readonly e2eRequests: number;
  /** The load client's mean latency, ms (from intended send times: it includes waiting for a free connection). */
  readonly clientMs: number | undefined;
  /** The whole machine's CPU over the step, when the caller measured it (every hop and the client share it). */
  readonly machine?: MachineCpu;
  /** Services that got inbound requests (and the entry proxy), slowest inside first. */
  readonly services: readonly ServiceHop[];
}

function okStatus(status: string): boolean {
  const s = Number(status);
  return s >= 200 && s < 400;
}

/**
 * The per-service account of a step from the counters' deltas. `client` is the load
 * client's own count and mean latency, used for the end-to-end time when the entry
 * proxy's counters are missing.
 */
export function hopStep(topo: HopTopology, delta: MeshCounters, seconds: number, client?: { requests: number; meanMs: number }): HopStep {
  let e2eSum = 0;
  let e2eCount = 0;
  let e2eErrors = 0;
  let entryCpu: number | undefined;
  let entryPeak: ServiceHop['peak'];
  for (const p of delta.proxies) {
    if (p.service !== topo.entry) continue;
    for (const h of p.http) {
      if (h.direction === 'outbound' && h.destination === topo.target) {
        e2eSum += h.sum;
        e2eCount += h.count;
        if (!okStatus(h.status)) e2eErrors += h.count;
      }
    }
    if (p.cpuSeconds !== undefined && seconds > 0) {
      entryCpu = (entryCpu ?? 0) + p.cpuSeconds;
      if (!entryPeak || p.cpuSeconds / seconds > entryPeak.cores) entryPeak = { process: 'sidecar', proxyId: p.proxyId, cores: p.cpuSeconds / seconds };
    }
  }
  const fromEntry = e2eCount > 0;
  let e2eMs: number | undefined = fromEntry ? (e2eSum / e2eCount) * 1000 : undefined;
  if (e2eMs === undefined && client && client.requests > 0) {
    e2eMs = client.meanMs;
    e2eCount = client.requests;
  }
  const e2eTotalMs = e2eMs !== undefined ? e2eMs * e2eCount : undefined;

  const services: ServiceHop[] = [];
  let targetInboundMs: number | undefined;
  for (const svc of topo.services) {
    const proxies = delta.proxies.filter((p) => p.service === svc.name);
    if (svc.protocol === 'tcp') {
      const hop = tcpHop(svc.name, proxies, seconds);
      if (hop) services.push(hop);
      continue;
    }
    let inSum = 0,
      inCount = 0,
      inErrors = 0,
      outSum = 0;
    let cpu: number | undefined, appCpu: number | undefined;
    let peak: ServiceHop['peak'];
    const consider = (process: 'app' | 'sidecar', proxyId: string, cpuSeconds: number | undefined): void => {
      if (cpuSeconds === undefined || !(seconds > 0)) return;
      if (!peak || cpuSeconds / seconds > peak.cores) peak = { process, proxyId, cores: cpuSeconds / seconds };
    };
    for (const p of proxies) {
      consider('sidecar', p.proxyId, p.cpuSeconds);
      consider('app', p.proxyId, p.appCpuSeconds);
      for (const h of p.http) {
        if (h.direction === 'inbound') {
          inSum += h.sum;
          inCount += h.count;
          if (!okStatus(h.status)) inErrors += h.count;
        } else if (h.direction === 'outbound') {
          outSum += h.sum;
        }
      }
      if (p.cpuSeconds !== undefined) cpu = (cpu ?? 0) + p.cpuSeconds;
      if (p.appCpuSeconds !== undefined) appCpu = (appCpu ?? 0) + p.appCpuSeconds;
    }
    if (inCount === 0) continue;
    if (svc.name === topo.target) targetInboundMs = (inSum / inCount) * 1000;
    const insideTotalMs = Math.max(0, inSum - outSum) * 1000;
    services.push({
      service: svc.name,
      role: 'service',
      requests: inCount,
      insideMs: insideTotalMs / inCount,
      share: e2eTotalMs !== undefined && e2eTotalMs > 0 ? insideTotalMs / e2eTotalMs : undefined,
      errorRate: inErrors / inCount,
      sidecarCores: cpu !== undefined && seconds > 0 ? cpu / seconds : undefined,
      appCores: appCpu !== undefined && seconds > 0 ? appCpu / seconds : undefined,
      peak,
    });
  }
  if (fromEntry && e2eMs !== undefined && targetInboundMs !== undefined) {
    const insideMs = Math.max(0, e2eMs - targetInboundMs);
    services.push({
      service: topo.entry,
      role: 'entry',
      requests: e2eCount,
      insideMs,
      share: e2eMs > 0 ? insideMs / e2eMs : undefined,
      errorRate: e2eErrors / e2eCount,
      sidecarCores: entryCpu !== undefined ? entryCpu / seconds : undefined,
      appCores: undefined,
      peak: entryPeak,
    });
  }
  services.sort((a, b) => b.insideMs - a.insideMs || (a.service < b.service ? -1 : 1));
  return { seconds, e2eMs, e2eRequests: e2eCount, clientMs: client && client.requests > 0 ? client.meanMs : undefined, services };
}

/** The hop of a raw TCP service, when its sidecars had connections in the step. */
function tcpHop(service: string, proxies: readonly ProxyCounters[], seconds: number): ServiceHop | undefined {
  let opened = 0,
    active = 0;
  let cpu: number | undefined, appCpu: number | undefined;
  let peak: ServiceHop['peak'];
  for (const p of proxies) {
    opened += p.tcpOpened ?? 0;
    active += p.tcpActive ?? 0;
    for (const [process, c] of [
      ['sidecar', p.cpuSeconds],
      ['app', p.appCpuSeconds],
    ] as const) {
      if (c === undefined || !(seconds > 0)) continue;
      if (!peak || c / seconds > peak.cores) peak = { process, proxyId: p.proxyId, cores: c / seconds };
    }
    if (p.cpuSeconds !== undefined) cpu = (cpu ?? 0) + p.cpuSeconds;
    if (p.appCpuSeconds !== undefined) appCpu = (appCpu ?? 0) + p.appCpuSeconds;
  }
  if (opened === 0 && active === 0) return undefined;
  return {
    service,
    role: 'tcp',
    requests: Math.max(opened, active),
    insideMs: 0,
    share: undefined,
    errorRate: 0,
    sidecarCores: cpu !== undefined && seconds > 0 ? cpu / seconds : undefined,
    appCores: appCpu !== undefined && seconds > 0 ? appCpu / seconds : undefined,
    peak,
  };
}

/** A step of the sweep as the bottleneck naming sees it. */
export interface RatedHopStep {
  readonly step: number;
  readonly rate: number;
  readonly ok: boolean;
  readonly hops: HopStep;
}

export interface Bottleneck {
  readonly service: string;
  readonly role: ServiceHop['role'];
  /** The step it was judged at (the first failing rate, or the highest rate run). */
  readonly step: number;
  readonly rate: number;
  /** One line on why. */
  readonly reason: string;
}

/** A process this busy (cores) is taken as saturated: Node runs JavaScript on one thread. */
export const SATURATED_CORES = 0.9;
/** An error rate this high at the knee marks a service. */
export const ERROR_MARK = 0.01;

function pct(f: number): string {
  return `${(f * 100).toFixed(f < 0.1 ? 1 : 0)}%`;
}

export function msText(ms: number): string {
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function coresText(c: number): string {
  return c >= 0.1 ? c.toFixed(2) : c.toFixed(3);
}

/** A hop's name for people: the service, "frontend (entry proxy)" or "postgres (TCP)". */
export function hopName(h: { service: string; role: ServiceHop['role'] }): string {
  return h.role === 'entry' ? `${h.service} (entry proxy)` : h.role === 'tcp' ? `${h.service} (TCP)` : h.service;
}

/** "sidecar 0.05 cores, app 0.95 cores" (what is known). */
export function cpuText(h: ServiceHop): string {
  const parts: string[] = [];
  if (h.appCores !== undefined) parts.push(`app ${coresText(h.appCores)} cores`);
  if (h.sidecarCores !== undefined) parts.push(`sidecar ${coresText(h.sidecarCores)} cores`);
  return parts.join(', ');
}

/**
 * Names the hop that saturates first. It is judged at the knee: the lowest rate that
 * missed the SLO (or, when none did, the highest rate run), against the lowest rate run.
 * A rate run twice counts by its last run.
 * In order:
 * 1. a service whose own inbound error rate at the knee is ≥ 1% while none of its
 *    upstreams' is (errors travel back up the chain; the deepest one is their source);
 * 2. a service whose app or sidecar runs at ≥ 0.9 cores at the knee (Node's one thread
 *    is full), when the time-inside growth does not point elsewhere by more (a TCP
 *    service's callers' growth points at it: they wait on it);
 * 3. the service whose time inside per request grew most from the lowest rate to the knee.
 */
export function nameBottleneck(steps: readonly RatedHopStep[], topo: HopTopology): Bottleneck | undefined {
  // A rate run more than once (the sweep repeats a first step that missed cold) is
  // judged by its last run alone: the earlier one neither marks the knee nor a baseline.
  const last = new Map<number, RatedHopStep>();
  for (const s of steps) if ((last.get(s.rate)?.step ?? -Infinity) < s.step) last.set(s.rate, s);
  const withData = [...last.values()].filter((s) => s.hops.services.length > 0);
  if (withData.length === 0) return undefined;
  const failing = withData.filter((s) => !s.ok).sort((a, b) => a.rate - b.rate);
  const byRate = [...withData].sort((a, b) => a.rate - b.rate);
  const knee = failing[0] ?? byRate[byRate.length - 1]!;
  // Each service's growth is measured from its least time inside below the knee's rate:
  // the first, coldest steps are often slower than the warm ones after them.
  const below = byRate.filter((s) => s.rate < knee.rate);
  const at = (s: RatedHopStep, like: ServiceHop): ServiceHop | undefined => s.hops.services.find((h) => h.service === like.service && h.role === like.role);
  const rateText = (r: number): string => (r >= 100 ? r.toFixed(0) : String(Number(r.toFixed(1))));
  const shareText = (h: ServiceHop): string => (h.share !== undefined ? `, ${pct(h.share)} of end-to-end` : '');
  const tail = (h: ServiceHop): string => {
    const cpu = cpuText(h);
    return cpu ? `; ${cpu}` : '';
  };
  const result = (h: ServiceHop, why: string): Bottleneck => ({ service: h.service, role: h.role, step: knee.step, rate: knee.rate, reason: why });

  // 1. errors, deepest first
  const upstreamsOf = new Map(topo.services.map((s) => [s.name, s.upstreams]));
  const callees = (h: ServiceHop): readonly string[] => (h.role === 'entry' ? [topo.target] : (upstreamsOf.get(h.service) ?? []));
  const erring = knee.hops.services.filter((h) => h.errorRate >= ERROR_MARK);
  const deepest = erring
    .filter((h) => !callees(h).some((u) => erring.some((e) => e.role === 'service' && e.service === u)))
    .sort((a, b) => b.errorRate - a.errorRate)[0];
  if (deepest) {
    return result(
      deepest,
      `${pct(deepest.errorRate)} of its requests failed at ${rateText(knee.rate)} req/s (time inside ${msText(deepest.insideMs)}${shareText(deepest)}${tail(deepest)})`,
    );
  }

  // 3. growth of time inside, computed first so 2 can defer to it
  // With no step below the knee there is nothing to grow from: the slowest inside is the answer.
  const baseline = (like: ServiceHop): { ms: number; rate: number } | undefined => {
    let best: { ms: number; rate: number } | undefined;
    for (const s of below) {
      const h = at(s, like);
      if (h && (!best || h.insideMs < best.ms)) best = { ms: h.insideMs, rate: s.rate };
    }
    return best;
  };
  const growth = knee.hops.services
    .filter((h) => h.role !== 'tcp')
    .map((h) => ({ h, base: baseline(h) }))
    .map((g) => ({ ...g, grew: g.h.insideMs - (g.base?.ms ?? 0) }))
    .sort((a, b) => b.grew - a.grew);
  const top = growth[0];

  // 2. a full CPU
  const busiest = knee.hops.services.filter((h) => h.peak !== undefined).sort((a, b) => b.peak!.cores - a.peak!.cores)[0];
  const grewBy = (h: ServiceHop): number => growth.find((g) => g.h === h)?.grew ?? 0;
  // A TCP service's wait shows as its callers' time inside, so a caller's growth is its.
  const explains = (h: ServiceHop): boolean =>
    !top || top.h === h || top.grew < 2 * Math.max(0, grewBy(h)) || (h.role === 'tcp' && (upstreamsOf.get(top.h.service) ?? []).includes(h.service));
  if (busiest && busiest.peak!.cores >= SATURATED_CORES && explains(busiest)) {
    const p = busiest.peak!;
    const detail =
      busiest.role === 'tcp'
        ? `${busiest.requests} connections; its callers' time inside includes waiting on it`
        : `time inside ${msText(busiest.insideMs)}${shareText(busiest)}`;
    return result(busiest, `its ${p.process} (${p.proxyId}) ran at ${coresText(p.cores)} cores at ${rateText(knee.rate)} req/s (${detail})`);
  }

  if (!top) return undefined;
  const from = !top.base
    ? ''
    : top.grew > 0
      ? `, up from ${msText(top.base.ms)} at ${rateText(top.base.rate)} req/s`
      : `, no more than the ${msText(top.base.ms)} at ${rateText(top.base.rate)} req/s: the knee shows in no service's own time`;
  return result(top.h, `time inside ${msText(top.h.insideMs)} per request at ${rateText(knee.rate)} req/s${shareText(top.h)}${from}${tail(top.h)}`);
}
