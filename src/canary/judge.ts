// How a canary step is judged: what the callers' sidecars counted for one version of a
// service over one interval (outbound series with destination=SERVICE and
// destination_version=VERSION, summed over every proxy), as deltas of the counters and
// histogram buckets between two readings, never totals since the proxies started; then
// a verdict on that window against the canary's limits, naming the metric, its value
// and the limit.
//
// Besides the version's own requests: the times outlier detection ejected one of its
// instances, and the requests meant for it that went to other versions because none of
// its instances could take them (failover). Those never show as the version's requests,
// and a canary judged on its requests alone saw "too little traffic" where its only
// instance was failing.
//
// Pure: Prometheus text in, verdicts out. The steps are step-runner.ts; reading the
// proxies is loadgen/hop-scrape.ts; the command and its printing are cli/canary.ts.
import { parsePrometheus } from '../telemetry/prometheus-text.js';
import { requestFailed } from '../telemetry/metrics.js';

const REQUESTS = 'trellis_http_requests_total';
const BUCKETS = 'trellis_http_request_duration_seconds_bucket';
const EJECTIONS = 'trellis_outlier_ejections_total';
const FAILOVERS = 'trellis_http_failovers_total';
const WANTED = new Set([REQUESTS, BUCKETS, EJECTIONS, FAILOVERS]);

/** One series of the version at one moment. */
interface Series {
  readonly metric: 'requests' | 'bucket' | 'ejections' | 'failovers';
  readonly status: string;
  /** The gRPC status of a gRPC call ('' otherwise). */
  readonly grpcStatus: string;
  /** Upper bound of a bucket, seconds. */
  readonly le: number;
  /** Why an ejection was made ('' for other series). */
  readonly reason: string;
  readonly value: number;
}

/** One moment: per proxy, each series of the version by its full label set. */
export type VersionReading = ReadonlyMap<string, ReadonlyMap<string, Series>>;

/** The series of `version` of `service` a canary reads, or undefined. */
function seriesOf(name: string, l: Readonly<Record<string, string>>, service: string, version: string): Series['metric'] | undefined {
  if (l.destination !== service) return undefined;
  if (name === EJECTIONS) return l.destination_version === version ? 'ejections' : undefined;
  // Away from the version's backend (`<service>-<version>`, the backends canary weights name).
  if (name === FAILOVERS) return l.backend === `${service}-${version}` ? 'failovers' : undefined;
  if (l.direction !== 'outbound' || l.destination_version !== version) return undefined;
  return name === REQUESTS ? 'requests' : 'bucket';
}

/** Reads the version's series out of every proxy's /metrics text. */
export function versionReading(texts: readonly { readonly id: string; readonly text: string }[], service: string, version: string): VersionReading {
  const out = new Map<string, Map<string, Series>>();
  for (const { id, text } of texts) {
    const series = new Map<string, Series>();
    for (const s of parsePrometheus(text, (n) => WANTED.has(n))) {
      const l = s.labels;
      const metric = seriesOf(s.name, l, service, version);
      if (metric === undefined) continue;
      // Every label is in the key, so no two series of a proxy share one.
      const key = `${s.name}${JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
      const le = l.le === '+Inf' ? Infinity : Number(l.le);
      series.set(key, { metric, status: l.status ?? '', grpcStatus: l.grpc_status ?? '', le, reason: l.reason ?? '', value: s.value });
    }
    out.set(id, series);
  }
  return out;
}

/** What one version got over a window. */
export interface WindowStats {
  /** Requests the version answered (or failed to). */
  readonly requests: number;
  /** Answered 5xx, not answered at all (status 0), or a gRPC call that ended in an error status. */
  readonly errors: number;
  /** Cumulative latency buckets: [upper bound in seconds, count], +Inf last. */
  readonly buckets: readonly (readonly [number, number])[];
  /** Requests meant for the version that went to another backend: none of its instances could take them. */
  readonly failovers: number;
  /** Times outlier detection ejected an instance of the version, by reason. */
  readonly ejections: Readonly<Record<string, number>>;
}

/**
 * A request that failed for the canary: the golden metrics' own rule (a 5xx, no
 * response, or a gRPC error status, which gRPC answers with HTTP 200).
 */
export function isError(status: string, grpcStatus = ''): boolean {
  return requestFailed(Number(status), grpcStatus);
}

/**
 * What was counted between two readings. A series lower than before (its proxy
 * restarted) counts from zero; a proxy missing from `before` (started meanwhile) too.
 */
export function windowStats(before: VersionReading, after: VersionReading): WindowStats {
  let requests = 0;
  let errors = 0;
  let failovers = 0;
  const ejections: Record<string, number> = {};
  const buckets = new Map<number, number>();
  for (const [id, series] of after) {
    const prior = before.get(id);
    for (const [key, s] of series) {
      const old = prior?.get(key)?.value;
      const delta = old !== undefined && s.value >= old ? s.value - old : s.value;
      // Buckets that did not move still bound the ones that did, so they are kept.
      if (s.metric === 'requests') {
        requests += delta;
        if (isError(s.status, s.grpcStatus)) errors += delta;
      } else if (s.metric === 'failovers') {
        failovers += delta;
      } else if (s.metric === 'ejections') {
        if (delta > 0) ejections[s.reason] = (ejections[s.reason] ?? 0) + delta;
      } else if (!Number.isNaN(s.le)) {
        buckets.set(s.le, (buckets.get(s.le) ?? 0) + delta);
      }
    }
  }
  return { requests, errors, buckets: [...buckets].sort((a, b) => a[0] - b[0]), failovers, ejections };
}

/**
 * The q-quantile of cumulative buckets, as Prometheus' histogram_quantile estimates it:
 * linear within the bucket it falls in; in the +Inf bucket, the highest finite bound.
 * Seconds; undefined with no observations.
 */
export function histogramQuantile(q: number, buckets: readonly (readonly [number, number])[]): number | undefined {
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  for (let i = 0; i < buckets.length; i++) {
    const [le, count] = buckets[i]!;
    if (count < rank) continue;
    const [lowerLe, lowerCount] = i === 0 ? [0, 0] : buckets[i - 1]!;
    if (le === Infinity) return lowerLe;
    if (count === lowerCount) return le;
    return lowerLe + (le - lowerLe) * ((rank - lowerCount) / (count - lowerCount));
  }
  return buckets[buckets.length - 2]?.[0];
}

/** The bounds of the bucket the q-quantile falls in, seconds: how precise the estimate is. */
export function quantileBucket(q: number, buckets: readonly (readonly [number, number])[]): [number, number] | undefined {
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  if (total === 0) return undefined;
  const i = buckets.findIndex(([, count]) => count >= q * total);
  return i < 0 ? undefined : [i === 0 ? 0 : buckets[i - 1]![0], buckets[i]![0]];
}

/** The limits of a canary. */
export interface CanaryLimits {
  /** Largest error rate that passes, 0..1. */
  readonly maxErrorRate: number;
  readonly maxP99Ms: number;
  /** Fewer requests in a window say nothing: the step waits or fails (see step-runner.ts). */
  readonly minRequests: number;
}

/** The judgement of one window. */
export type Verdict =
  | { readonly kind: 'pass' }
  | { readonly kind: 'too-little-traffic' }
  | { readonly kind: 'breach'; readonly metric: 'ejection' | 'error rate' | 'p99'; readonly reason: string };

export function percent(f: number): string {
  const p = f * 100;
  return `${p === 0 || p >= 10 || Number.isInteger(p) ? Number(p.toFixed(1)) : Number(p.toFixed(2))}%`;
}

export function msText(ms: number): string {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${Number(ms.toFixed(1))} ms`;
}

/** p99 of a window, ms. */
export function p99Ms(s: WindowStats): number | undefined {
  const q = histogramQuantile(0.99, s.buckets);
  return q === undefined ? undefined : q * 1000;
}

/** Ejections of the window, e.g. "2 times (consecutive-5xx)". */
export function ejectionText(e: Readonly<Record<string, number>>): string {
  const n = Object.values(e).reduce((a, b) => a + b, 0);
  return `${n} time${n === 1 ? '' : 's'} (${Object.keys(e).sort().join(', ')})`;
}

/** "5 of 80 requests failed" plus, with failovers, how many of them went elsewhere. */
function failedText(s: WindowStats): string {
  const requests = s.requests + s.failovers;
  const failed = s.errors + s.failovers;
  if (s.failovers === 0) return `${failed} of ${requests} requests failed`;
  return `${failed} of ${requests} requests failed: ${s.errors} answered with errors, ${s.failovers} sent to other versions because no instance could take them`;
}

/**
 * An ejection first: outlier detection in the callers' sidecars already judged an
 * instance of the version failing, whatever the traffic. Then the error rate, where a
 * request sent elsewhere (failover) counts as a request of the version that failed:
 * it was meant for the version, which could not take it. Then p99.
 */
export function judge(s: WindowStats, l: CanaryLimits): Verdict {
  if (Object.keys(s.ejections).length > 0) {
    return {
      kind: 'breach',
      metric: 'ejection',
      reason: `outlier detection in the callers' sidecars ejected the version's instances ${ejectionText(s.ejections)}; ${failedText(s)}`,
    };
  }
  const requests = s.requests + s.failovers;
  if (requests < l.minRequests) return { kind: 'too-little-traffic' };
  const rate = requests > 0 ? (s.errors + s.failovers) / requests : 0;
  if (rate > l.maxErrorRate) {
    return {
      kind: 'breach',
      metric: 'error rate',
      reason: `error rate ${percent(rate)} (${failedText(s)}) is above --max-error-rate ${percent(l.maxErrorRate)}`,
    };
  }
  const p99 = p99Ms(s);
  if (p99 !== undefined && p99 > l.maxP99Ms) {
    const [lo, hi] = quantileBucket(0.99, s.buckets)!;
    const bucket = hi === Infinity ? `above ${msText(lo * 1000)}` : `in the ${msText(lo * 1000)} to ${msText(hi * 1000)} bucket`;
    return {
      kind: 'breach',
      metric: 'p99',
      reason: `p99 latency ${msText(p99)} (${bucket} of the sidecars' histograms, over ${s.requests} requests) is above --max-p99 ${msText(l.maxP99Ms)}`,
    };
  }
  return { kind: 'pass' };
}
