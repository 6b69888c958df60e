// The metrics-scrape scenario (issue 14): how long a `GET /metrics` of a proxy holding
// about 1,000 series takes. A Trellis pair whose upstream service has `routes` HTTPRoutes
// (one PathPrefix rule each); one request per route makes one HTTP label set per route
// (the upstream's answer, a 404, is its status), 25 series each (a counter, 21 latency buckets and +Inf, sum, count), beside
// the proxy's own series (connections, pools, balancing, process). Then `scrapes`
// sequential scrapes of the outbound proxy's admin /metrics over one keep-alive
// connection, timed from the request to the body's last byte, first idle and then
// while wrk loads the pair (a scrape shares the proxy's one thread with its traffic).
// Prometheus text and OpenMetrics (Prometheus asks for the latter) are timed alike.
// Target: p99 under 10 ms.
import http from 'node:http';
import type { Processes, Target } from './targets.js';
import { startTrellisPair } from './targets.js';
import { runWrk } from './wrk.js';
import { sampleGroups } from './resources.js';

export interface ScrapeTimes {
  readonly scrapes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly bytes: number;
  /**
   * The proxy's CPU milliseconds per scrape (its clock ticks over all the scrapes): what a
   * scrape costs the proxy, which a busy machine's scheduling does not inflate as it does
   * the wall-clock times. Undefined under load (the traffic's CPU is in it) or without /proc.
   */
  readonly cpuMsPerScrape?: number;
}

export interface ScrapeResult {
  readonly routes: number;
  /** Sample lines in the proxy's exposition (what Prometheus stores as series). */
  readonly series: number;
  readonly idle: { readonly text: ScrapeTimes; readonly openMetrics: ScrapeTimes };
  /** While wrk drives the pair at its max rate; undefined without wrk. */
  readonly loaded?: { readonly text: ScrapeTimes; readonly rps: number };
}

export interface ScrapeOptions {
  readonly procs: Processes;
  readonly repoRoot: string;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly wrk?: string;
  readonly routes: number;
  readonly scrapes: number;
  readonly connections: number;
  readonly log: (msg: string) => void;
}

/** `n` HTTPRoutes on `upstream`, route `rNN` matching PathPrefix `/rNN`. */
export function scrapeRoutesYaml(n: number): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `r${String(i).padStart(3, '0')}`;
    docs.push(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench-${id}
spec:
  parentRefs: [{ name: upstream }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /${id} } }]
      backendRefs: [{ name: upstream }]
`);
  }
  // The pair's readiness probe (and the scrape's load) is `GET /`: a catch-all route keeps it routed.
  docs.push(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench-default
spec:
  parentRefs: [{ name: upstream }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: upstream }]
`);
  return docs.join('---\n');
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One GET; the body as bytes (a scrape's timing should not include decoding 300 KB into a string). */
function get(url: string, accept?: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 10_000, ...(accept ? { headers: { accept } } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
  });
}

/**
 * One timed scrape: the status and the body's length, its bytes dropped as they arrive
 * (Prometheus reads into buffers it reuses; gathering 300 KB into a new Buffer per scrape
 * would time this client's garbage collector too).
 */
function scrapeOnce(url: string, accept?: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 10_000, ...(accept ? { headers: { accept } } : {}) }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
  });
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

async function timeScrapes(url: string, n: number, accept?: string, pgid?: number): Promise<ScrapeTimes> {
  const before = pgid === undefined ? undefined : sampleGroups([pgid])?.get(pgid);
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await scrapeOnce(url, accept);
    ms.push(performance.now() - t0);
    if (r.status !== 200) throw new Error(`GET ${url} answered ${r.status}`);
    bytes = r.bytes;
  }
  const after = pgid === undefined ? undefined : sampleGroups([pgid])?.get(pgid);
  ms.sort((a, b) => a - b);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  // Clock ticks are 10 ms (USER_HZ 100).
  const cpu = before && after && after.processes > 0 ? { cpuMsPerScrape: r2(((after.cpuTicks - before.cpuTicks) * 10) / n) } : {};
  return { scrapes: n, p50Ms: r2(quantile(ms, 0.5)), p99Ms: r2(quantile(ms, 0.99)), maxMs: r2(ms[ms.length - 1] ?? 0), bytes, ...cpu };
}

export async function runScrape(o: ScrapeOptions): Promise<ScrapeResult> {
  let pair: Target | undefined;
  try {
    pair = await startTrellisPair(o.procs, o.repoRoot, o.dir, o.upstreamPort, 'http', { name: `scrape-${o.routes}`, yaml: scrapeRoutesYaml(o.routes) });
    const base = pair.url.replace(/\/$/, '');
    o.log(`scrape: one request per route and status over ${o.routes} routes`);
    for (let i = 0; i < o.routes; i++) {
      const id = `r${String(i).padStart(3, '0')}`;
      await get(`${base}/${id}`);
    }
    const metricsUrl = `${pair.outboundAdmin}/metrics`;
    const text = (await get(metricsUrl)).body.toString('utf8');
    const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    o.log(`scrape: the outbound proxy exposes ${series} series; ${o.scrapes} scrapes idle`);
    // Warm the render path (JIT) as a Prometheus that scrapes every 15 s has long done.
    await timeScrapes(metricsUrl, 20);
    const pgid = pair.processes?.[0]?.managed.child.pid;
    const idleText = await timeScrapes(metricsUrl, o.scrapes, undefined, pgid);
    const idleOm = await timeScrapes(metricsUrl, o.scrapes, 'application/openmetrics-text; version=1.0.0', pgid);
    let loaded: ScrapeResult['loaded'];
    if (o.wrk !== undefined) {
      o.log(`scrape: ${o.scrapes} scrapes while wrk loads the pair`);
      const durationS = 10;
      const load = runWrk({ wrk: o.wrk, url: pair.url, threads: 1, connections: o.connections, durationS, timeoutS: 5 });
      await new Promise((r) => setTimeout(r, 1000));
      const times = await timeScrapes(metricsUrl, o.scrapes);
      const w = await load;
      loaded = { text: times, rps: Math.round(w.rps) };
    }
    return { routes: o.routes, series, idle: { text: idleText, openMetrics: idleOm }, ...(loaded ? { loaded } : {}) };
  } finally {
    agent.destroy();
    await pair?.stop();
  }
}

export function formatScrape(r: ScrapeResult): string {
  const t = (x: ScrapeTimes): string =>
    `p50 ${x.p50Ms.toFixed(2)} ms, p99 ${x.p99Ms.toFixed(2)} ms, max ${x.maxMs.toFixed(2)} ms (${x.scrapes} scrapes, ${Math.round(x.bytes / 1024)} KB)${x.cpuMsPerScrape === undefined ? '' : `, proxy CPU ${x.cpuMsPerScrape.toFixed(2)} ms/scrape`}`;
  const lines = [
    `metrics scrape: GET /metrics of an outbound proxy with ${r.series} series (${r.routes} routes), target p99 < 10 ms`,
    `  idle, Prometheus text: ${t(r.idle.text)}`,
    `  idle, OpenMetrics:     ${t(r.idle.openMetrics)}`,
  ];
  if (r.loaded) lines.push(`  under max-rate load (${r.loaded.rps} rps), Prometheus text: ${t(r.loaded.text)}`);
  return `${lines.join('\n')}\n`;
}
