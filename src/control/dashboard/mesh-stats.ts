// The proxies' golden metrics, summed up for the dashboard: the control plane reads every
// connected proxy's /metrics and /balancing (the endpoints Prometheus discovers through
// /v1/prometheus/targets, and `trellis status` reads), keeps the differences between
// reads, and answers rate, success and p99 per edge, service, route and version over a
// window, as Linkerd's viz reads its proxies (through Prometheus; here directly, so
// nothing else needs to run).
//
// Bounded and cheap: the proxies are read only while someone asks (a dashboard open),
// at most once per `minIntervalMs` whoever asks, with one read in flight shared by every
// asker; each proxy's answer is cut off at `maxBodyBytes` and `timeoutMs`; at most
// `concurrency` proxies are read at once and `maxProxies` in all; the history is a fixed
// number of intervals, each with at most `maxKeys` aggregates.
//
// A proxy that answers after `timeoutMs` (a busy machine) is counted failed for that read,
// but its answer is not thrown away: the next read of that proxy waits for it again
// instead of asking anew (at most one request in flight per proxy, given up after
// `lateMs`), and counts it. Dropping it lost counts: a proxy's first read is its
// baseline, so when that one came late, every request until the next read went
// uncounted (e2e/dashboard.test.ts once saw 32 of 60).
import http from 'node:http';
import { histogramQuantile } from '../../canary/judge.js';
import { parsePrometheus } from '../../telemetry/prometheus-text.js';
import type {
  AuthzDenials,
  BalancingReport,
  ChartPoint,
  Denials,
  RateLimitRefusals,
  EdgeStats,
  Golden,
  RouteStats,
  ServiceStats,
  StatsView,
  VersionStats,
} from '../../api/dashboard.js';
import type { BreakerView, EndpointView } from '../../api/views.js';
import type { MeshModel, ProxyState } from '../model.js';
import { targetAddress } from '../admin/prometheus-sd.js';

const REQUESTS = 'trellis_http_requests_total';
const BUCKETS = 'trellis_http_request_duration_seconds_bucket';
const TCP_CONNECTIONS = 'trellis_tcp_connections_total';
const TCP_BYTES = 'trellis_tcp_bytes_total';
/** Refusals counted where they happen, on the destination's sidecar: labels from config (policy, limit), never a request's. */
const AUTHZ_DENIALS = 'trellis_authz_denials_total';
const RATE_LIMITED = 'trellis_http_rate_limited_total';
const WANTED = new Set([REQUESTS, BUCKETS, TCP_CONNECTIONS, TCP_BYTES, AUTHZ_DENIALS, RATE_LIMITED]);

/** What a window of one aggregate adds up to. */
interface Agg {
  req: number;
  fail: number;
  conns: number;
  bytes: number;
  /** Observations by bucket upper bound (seconds; not cumulative differences, but differences of the cumulative counts). */
  readonly buckets: Map<number, number>;
}

interface Interval {
  /** ms, end of the interval. */
  readonly at: number;
  readonly seconds: number;
  readonly aggs: Map<string, Agg>;
}

export interface MeshStatsOptions {
  readonly model: MeshModel;
  /** Proxies are read at most this often (default 1000 ms). */
  readonly minIntervalMs?: number;
  /** Rates are over this window (default 10 s). */
  readonly windowMs?: number;
  /** Intervals kept for the charts (default 120). */
  readonly historyIntervals?: number;
  /** How long a read waits for a proxy (default 1500 ms); a later answer is counted at the next read. */
  readonly timeoutMs?: number;
  /** A proxy's request not answered by then is given up (default 10 s). */
  readonly lateMs?: number;
  /** Largest /metrics or /balancing answer read (default 4 MiB); a larger one counts as failed. */
  readonly maxBodyBytes?: number;
  /** Proxies read at once (default 8). */
  readonly concurrency?: number;
  /** Proxies read in all, the rest left out (default 500). */
  readonly maxProxies?: number;
  /** Aggregates per interval (default 4000); series beyond them are not counted. */
  readonly maxKeys?: number;
  /** ms clock (tests). */
  readonly now?: () => number;
}

/** GETs `url` and reads at most `maxBytes` of the answer; rejects on a non-200, a timeout or more bytes. */
export function getBounded(url: string, timeoutMs: number, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`answered ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const tooLarge = new Error(`answer over ${maxBytes} bytes`);
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          // Settled here: a whole answer in one chunk would still end, and must not count.
          reject(tooLarge);
          req.destroy(tooLarge);
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => (size > maxBytes ? reject(tooLarge) : resolve(Buffer.concat(chunks).toString('utf8'))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** A proxy's two answers. */
interface ProxyRead {
  readonly metrics: string;
  readonly balancing: string | undefined;
}

/** `read`'s answer, or undefined when it has none within `ms` (it may still come). */
function within<T>(read: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
    read.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

const newAgg = (): Agg => ({ req: 0, fail: 0, conns: 0, bytes: 0, buckets: new Map() });

function seriesKey(name: string, labels: Readonly<Record<string, string>>): string {
  let key = name;
  for (const k in labels) key += `\0${k}=${labels[k]}`;
  return key;
}

/** The aggregates one series adds to; the caller is the proxy's own service, never a label a client picked. */
function aggKeys(name: string, l: Readonly<Record<string, string>>, proxy: ProxyState): string[] {
  // By the refusing sidecar's service and the policy (and limit, or protocol) that refused.
  if (name === AUTHZ_DENIALS) return [`z\0${proxy.service}\0${l.policy ?? ''}\0${l.protocol ?? ''}`];
  if (name === RATE_LIMITED) return [`q\0${proxy.service}\0${l.policy ?? ''}\0${l.limit ?? ''}`];
  const dst = l.destination ?? 'unknown';
  if (l.direction === 'outbound') {
    const keys = [`e\0${proxy.service}\0${dst}`];
    if (name === REQUESTS || name === BUCKETS) {
      if (l.route !== undefined) keys.push(`r\0${dst}\0${l.route}`);
      if (l.destination_version !== undefined) keys.push(`v\0${dst}\0${l.destination_version}`);
    }
    return keys;
  }
  if (l.direction === 'inbound') {
    const keys = [`s\0${proxy.service}`];
    if (name === REQUESTS && l.status === '403') keys.push(`d\0${l.source ?? 'unknown'}\0${proxy.service}`);
    return keys;
  }
  return [];
}

export class MeshStats {
  readonly #o: Required<Omit<MeshStatsOptions, 'model'>> & { model: MeshModel };
  /** Each proxy's series values at its last read. */
  readonly #last = new Map<string, Map<string, number>>();
  #lastAt: number | undefined;
  readonly #intervals: Interval[] = [];
  /** Since the first read. */
  readonly #totals = new Map<string, number>();
  #balancing: BalancingReport[] = [];
  #failed: string[] = [];
  #read = 0;
  #inFlight: Promise<void> | undefined;
  /** Reads a proxy had not answered in time, by proxy id: the next read of it waits for the same answer. */
  readonly #late = new Map<string, Promise<ProxyRead>>();
  #waiting = 0;

  constructor(o: MeshStatsOptions) {
    this.#o = {
      model: o.model,
      minIntervalMs: o.minIntervalMs ?? 1000,
      windowMs: o.windowMs ?? 10_000,
      historyIntervals: o.historyIntervals ?? 120,
      timeoutMs: o.timeoutMs ?? 1500,
      lateMs: o.lateMs ?? 10_000,
      maxBodyBytes: o.maxBodyBytes ?? 4 * 1024 * 1024,
      concurrency: o.concurrency ?? 8,
      maxProxies: o.maxProxies ?? 500,
      maxKeys: o.maxKeys ?? 4000,
      now: o.now ?? Date.now,
    };
  }

  /** Reads of proxies not answered yet, late ones included (tests wait on it). */
  get waitingReads(): number {
    return this.#waiting;
  }

  /** The stats, reading the proxies first when the last read is older than `minIntervalMs`. */
  async view(): Promise<StatsView> {
    const now = this.#o.now();
    if (this.#lastAt === undefined || now - this.#lastAt >= this.#o.minIntervalMs) {
      this.#inFlight ??= this.#readAll().finally(() => {
        this.#inFlight = undefined;
      });
      await this.#inFlight;
    }
    return this.#view();
  }

  async #readAll(): Promise<void> {
    const proxies = this.#o.model
      .proxies()
      .filter((p) => p.connected)
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .slice(0, this.#o.maxProxies);
    const texts = new Map<string, { proxy: ProxyState; metrics: string; balancing: string | undefined }>();
    const failed: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < proxies.length) {
        const p = proxies[next++]!;
        const address = targetAddress(p);
        if (address === undefined) {
          failed.push(p.id);
          continue;
        }
        const read = this.#late.get(p.id) ?? this.#readProxy(address);
        this.#late.delete(p.id);
        try {
          const r = await within(read, this.#o.timeoutMs);
          if (r === undefined) {
            this.#late.set(p.id, read);
            failed.push(p.id);
          } else texts.set(p.id, { proxy: p, metrics: r.metrics, balancing: r.balancing });
        } catch {
          failed.push(p.id);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, proxies.length) }, worker));
    const at = this.#o.now();
    const seconds = this.#lastAt === undefined ? 0 : (at - this.#lastAt) / 1000;
    // After a long quiet spell (no one watching) the difference would smear minutes into one
    // point: start again from this read instead.
    const record = seconds > 0 && seconds * 1000 <= 3 * this.#o.windowMs;
    const aggs = new Map<string, Agg>();
    const balancing: BalancingReport[] = [];
    for (const [id, { proxy, metrics, balancing: b }] of texts) {
      const before = this.#last.get(id);
      const now = new Map<string, number>();
      for (const s of parsePrometheus(metrics, (n) => WANTED.has(n))) {
        const key = seriesKey(s.name, s.labels);
        now.set(key, s.value);
        if (!before) continue; // a proxy's first read is its baseline
        const prev = before.get(key) ?? 0;
        // A counter that went down was reset (the proxy restarted under the same id): count from 0.
        const delta = s.value >= prev ? s.value - prev : s.value;
        if (delta === 0 || !Number.isFinite(delta)) continue;
        for (const k of aggKeys(s.name, s.labels, proxy)) {
          let a = aggs.get(k);
          if (!a) {
            if (aggs.size >= this.#o.maxKeys) continue;
            a = newAgg();
            aggs.set(k, a);
          }
          if (s.name === AUTHZ_DENIALS || s.name === RATE_LIMITED) {
            a.req += delta;
          } else if (s.name === REQUESTS) {
            a.req += delta;
            if (s.labels.classification === 'failure') a.fail += delta;
          } else if (s.name === BUCKETS) {
            const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
            if (!Number.isNaN(le)) a.buckets.set(le, (a.buckets.get(le) ?? 0) + delta);
          } else if (s.name === TCP_CONNECTIONS) {
            a.conns += delta;
          } else {
            a.bytes += delta;
          }
        }
      }
      this.#last.set(id, now);
      if (b !== undefined) balancing.push(balancingReport(id, b));
    }
    // Proxies gone from the model are forgotten (bounded by the proxies that exist).
    const live = new Set(proxies.map((p) => p.id));
    for (const id of this.#last.keys()) if (!live.has(id)) this.#last.delete(id);
    for (const id of this.#late.keys()) if (!live.has(id)) this.#late.delete(id);
    if (record) {
      this.#intervals.push({ at, seconds, aggs });
      if (this.#intervals.length > this.#o.historyIntervals) this.#intervals.shift();
      for (const [k, a] of aggs) {
        if (a.req > 0 && (this.#totals.has(k) || this.#totals.size < this.#o.maxKeys)) this.#totals.set(k, (this.#totals.get(k) ?? 0) + a.req);
      }
    }
    this.#lastAt = at;
    this.#balancing = balancing;
    this.#failed = failed.sort();
    this.#read = texts.size;
  }

  /** One proxy's /metrics and /balancing, waited for up to `lateMs` (never rejected unhandled: a late read may be dropped). */
  #readProxy(address: string): Promise<ProxyRead> {
    const { lateMs, maxBodyBytes } = this.#o;
    this.#waiting++;
    const read = Promise.all([
      getBounded(`http://${address}/metrics`, lateMs, maxBodyBytes),
      getBounded(`http://${address}/balancing`, lateMs, maxBodyBytes).catch(() => undefined),
    ]).then(([metrics, balancing]) => ({ metrics, balancing }));
    void read.then(
      () => this.#waiting--,
      () => this.#waiting--,
    );
    return read;
  }

  #view(): StatsView {
    const windowStart = (this.#lastAt ?? 0) - this.#o.windowMs;
    const inWindow = this.#intervals.filter((i) => i.at > windowStart);
    const seconds = inWindow.reduce((s, i) => s + i.seconds, 0);
    const window = new Map<string, Agg>();
    for (const i of inWindow) for (const [k, a] of i.aggs) addTo(window, k, a);
    const keys = new Set([...window.keys(), ...this.#totals.keys()]);
    const edges: EdgeStats[] = [];
    const services: Record<string, ServiceStats> = {};
    const routes: RouteStats[] = [];
    const versions: VersionStats[] = [];
    const denials: Denials[] = [];
    const authzDenials: AuthzDenials[] = [];
    const rateLimited: RateLimitRefusals[] = [];
    for (const k of [...keys].sort()) {
      const a = window.get(k) ?? newAgg();
      const g = golden(a, seconds, this.#totals.get(k) ?? 0);
      const [kind, x = '', y = '', z = ''] = k.split('\0');
      if (kind === 'e') {
        edges.push({ source: x, destination: y, ...g, connectionsPerS: rate(a.conns, seconds), bytesPerS: rate(a.bytes, seconds) });
      } else if (kind === 's') {
        services[x] = { ...g, history: this.#history(k) };
      } else if (kind === 'r') {
        routes.push({ destination: x, route: y, ...g });
      } else if (kind === 'v') {
        versions.push({ service: x, version: y, ...g });
      } else if (kind === 'd') {
        denials.push({ source: x, destination: y, count: a.req, total: this.#totals.get(k) ?? 0 });
      } else if (kind === 'z') {
        authzDenials.push({ service: x, policy: y, protocol: z, count: a.req, total: this.#totals.get(k) ?? 0 });
      } else if (kind === 'q') {
        rateLimited.push({ service: x, policy: y, limit: z, count: a.req, total: this.#totals.get(k) ?? 0 });
      }
    }
    return {
      at: this.#lastAt === undefined ? null : new Date(this.#lastAt).toISOString(),
      windowS: this.#o.windowMs / 1000,
      proxiesRead: this.#read,
      proxiesFailed: this.#failed,
      edges,
      services,
      routes,
      versions,
      denials,
      authzDenials,
      rateLimited,
      balancing: this.#balancing,
    };
  }

  #history(key: string): ChartPoint[] {
    return this.#intervals.map((i) => {
      const a = i.aggs.get(key) ?? newAgg();
      const g = golden(a, i.seconds, 0);
      return [Math.round(i.at / 100) / 10, g.rps, g.successRate, g.p99Ms] as const;
    });
  }
}

function addTo(into: Map<string, Agg>, k: string, a: Agg): void {
  let t = into.get(k);
  if (!t) {
    t = newAgg();
    into.set(k, t);
  }
  t.req += a.req;
  t.fail += a.fail;
  t.conns += a.conns;
  t.bytes += a.bytes;
  for (const [le, n] of a.buckets) t.buckets.set(le, (t.buckets.get(le) ?? 0) + n);
}

const rate = (n: number, seconds: number): number => (seconds > 0 ? Math.round((n / seconds) * 100) / 100 : 0);

function golden(a: Agg, seconds: number, total: number): Golden {
  const buckets = [...a.buckets].sort((x, y) => x[0] - y[0]);
  const p99 = a.req > 0 ? histogramQuantile(0.99, buckets) : undefined;
  return {
    rps: rate(a.req, seconds),
    successRate: a.req > 0 ? (a.req - a.fail) / a.req : null,
    p99Ms: p99 === undefined ? null : Math.round(p99 * 1e6) / 1e3,
    requests: a.req,
    total,
  };
}

/** A proxy's /balancing, trusted no further than its shape. */
function balancingReport(proxy: string, text: string): BalancingReport {
  try {
    const body = JSON.parse(text) as { endpoints?: unknown; breakers?: unknown };
    const endpoints = Array.isArray(body.endpoints) ? (body.endpoints as EndpointView[]).slice(0, 1000) : [];
    const breakers = Array.isArray(body.breakers) ? (body.breakers as BreakerView[]).slice(0, 1000) : [];
    return { proxy, endpoints, breakers };
  } catch {
    return { proxy, endpoints: [], breakers: [] };
  }
}
