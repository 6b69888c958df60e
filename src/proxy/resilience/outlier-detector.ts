// Passive health: every sidecar watches the answers it gets from each endpoint of a
// service and ejects the ones that misbehave, for a while, without waiting for the
// control plane's active checks. The detectors and defaults are Envoy's
// (outlier_detection):
//
// - consecutive 5xx: 5 in a row (a connect failure or reset counts as a 503);
// - consecutive gateway failures: 5 in a row of 502, 503, 504 or no answer;
// - success rate: every interval, among endpoints with at least `successRateRequestVolume`
//   requests, when at least `successRateMinimumHosts` qualify, an endpoint whose success
//   rate is below mean − stdevFactor/1000 × stdev is ejected;
// - failure percentage: every interval, an endpoint with at least
//   `failurePercentageRequestVolume` requests failing at least `failurePercentageThreshold`%
//   (off by default, as Envoy's enforcing 0).
//
// An ejection lasts base × the times the endpoint was ejected, at most `maxEjectionTimeMs`;
// the count goes down by one for each interval the endpoint spends in rotation, so a
// flapping endpoint stays out longer and a recovered one is forgiven. At most
// `maxEjectionPercent` of the endpoints are out at once, but one can always be.
//
// The detector only keeps score; the balancers ask `isEjected` when they pick. Time comes
// from an injected clock so tests run on a fake one.

export interface OutlierConfig {
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  readonly successRateMinimumHosts: number;
  readonly successRateRequestVolume: number;
  /** Envoy's stdev_factor: the threshold is mean − (factor / 1000) × stdev. */
  readonly successRateStdevFactor: number;
  /** 0 turns the failure-percentage detector off. */
  readonly failurePercentageThreshold: number;
  readonly failurePercentageMinimumHosts: number;
  readonly failurePercentageRequestVolume: number;
}

export const DEFAULT_OUTLIER_CONFIG: OutlierConfig = {
  consecutive5xx: 5,
  consecutiveGatewayFailure: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
  successRateMinimumHosts: 5,
  successRateRequestVolume: 100,
  successRateStdevFactor: 1900,
  failurePercentageThreshold: 0,
  failurePercentageMinimumHosts: 5,
  failurePercentageRequestVolume: 50,
};

/** How an exchange with an endpoint ended, as the detector counts it. */
export type Outcome = 'success' | 'server-error' | 'gateway-error';

/** Classifies a response status (0: no answer: refused, reset or timed out). */
export function outcomeOf(status: number): Outcome {
  if (status === 0 || status === 502 || status === 503 || status === 504) return 'gateway-error';
  if (status >= 500) return 'server-error';
  return 'success';
}

import type { EjectionReason } from '../../api/views.js';
export type { EjectionReason } from '../../api/views.js';

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Requests and successes in the current interval. */
  requests: number;
  successes: number;
  /** Times ejected, less one per interval spent in rotation. */
  ejections: number;
  ejectedUntil: number;
  reason: EjectionReason | undefined;
  /** Total ejections, for metrics. */
  totalEjections: number;
}

/** One endpoint's state, for metrics and `trellis status`. */
export interface OutlierHostView {
  readonly id: string;
  readonly ejected: boolean;
  readonly reason: EjectionReason | undefined;
  readonly ejectedForMs: number;
  readonly totalEjections: number;
}

export class OutlierDetector {
  readonly config: OutlierConfig;
  readonly #hosts = new Map<string, HostState>();
  #ejected = 0;
  readonly #now: () => number;
  #lastInterval: number;
  /** Called when an endpoint is ejected or returns (for logs). */
  onChange: ((id: string, ejected: boolean, reason: EjectionReason | undefined) => void) | undefined;

  constructor(config: Partial<OutlierConfig> = {}, now: () => number = () => performance.now()) {
    this.config = { ...DEFAULT_OUTLIER_CONFIG, ...config };
    this.#now = now;
    this.#lastInterval = now();
  }

  /** Endpoints with an ejection not yet returned (some may have run out): 0 lets balancers skip every check. */
  get ejectedCount(): number {
    return this.#ejected;
  }

  /** The endpoints to watch; state of those that left is dropped, of those that stay kept. */
  setEndpoints(ids: readonly string[]): void {
    const keep = new Set(ids);
    for (const id of this.#hosts.keys()) if (!keep.has(id)) this.#hosts.delete(id);
    for (const id of ids) if (!this.#hosts.has(id)) this.#hosts.set(id, newHost());
    this.#ejected = 0;
    for (const h of this.#hosts.values()) if (h.ejectedUntil !== 0) this.#ejected++;
  }

  /** Counts one finished exchange with endpoint `id`. */
  report(id: string, outcome: Outcome, now: number = this.#now()): void {
    const h = this.#hosts.get(id);
    if (h === undefined) return;
    this.#maybeInterval(now);
    h.requests++;
    if (outcome === 'success') {
      h.successes++;
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    h.consecutive5xx++;
    if (outcome === 'gateway-error') h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    if (this.#isEjected(h, now)) return;
    if (h.consecutive5xx >= this.config.consecutive5xx) this.#eject(id, h, 'consecutive-5xx');
    else if (h.consecutiveGateway >= this.config.consecutiveGatewayFailure) this.#eject(id, h, 'consecutive-gateway-failure');
  }

  isEjected(id: string): boolean {
    const now = this.#now();
    this.#maybeInterval(now);
    const h = this.#hosts.get(id);
    if (h === undefined || h.ejectedUntil === 0) return false;
    if (this.#isEjected(h, now)) return true;
    this.#return(id, h);
    return false;
  }

  /** An ejection that ran out: back in rotation, with a clean run of answers. */
  #return(id: string, h: HostState): void {
    if (h.ejectedUntil === 0) return;
    h.ejectedUntil = 0;
    this.#ejected--;
    h.reason = undefined;
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
    this.onChange?.(id, false, undefined);
  }

  /** Runs the interval's work if an interval has passed: returns, decays, success rate. */
  #maybeInterval(now: number = this.#now()): void {
    if (now - this.#lastInterval < this.config.intervalMs) return;
    this.#lastInterval = now;
    this.#interval(now);
  }

  #interval(now: number): void {
    for (const [id, h] of this.#hosts) {
      if (h.ejectedUntil !== 0 && h.ejectedUntil <= now) this.#return(id, h);
      else if (h.ejectedUntil === 0 && h.ejections > 0) h.ejections--;
    }
    this.#successRate(now);
    this.#failurePercentage(now);
    for (const h of this.#hosts.values()) {
      h.requests = 0;
      h.successes = 0;
    }
  }

  #successRate(now: number): void {
    const c = this.config;
    const qualified = [...this.#hosts].filter(([, h]) => h.requests >= c.successRateRequestVolume && !this.#isEjected(h, now));
    if (qualified.length < c.successRateMinimumHosts || qualified.length === 0) return;
    const rates = qualified.map(([, h]) => (h.successes / h.requests) * 100);
    const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
    const stdev = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
    const threshold = mean - (c.successRateStdevFactor / 1000) * stdev;
    qualified.forEach(([id, h], i) => {
      if (rates[i]! < threshold) this.#eject(id, h, 'success-rate');
    });
  }

  #failurePercentage(now: number): void {
    const c = this.config;
    if (c.failurePercentageThreshold <= 0) return;
    const qualified = [...this.#hosts].filter(([, h]) => h.requests >= c.failurePercentageRequestVolume && !this.#isEjected(h, now));
    if (qualified.length < c.failurePercentageMinimumHosts) return;
    for (const [id, h] of qualified) {
      if (((h.requests - h.successes) / h.requests) * 100 >= c.failurePercentageThreshold) this.#eject(id, h, 'failure-percentage');
    }
  }

  #eject(id: string, h: HostState, reason: EjectionReason): void {
    const now = this.#now();
    if (!this.#mayEject(now)) return;
    if (h.ejectedUntil === 0) this.#ejected++;
    h.ejections++;
    h.totalEjections++;
    h.ejectedUntil = now + Math.min(this.config.baseEjectionTimeMs * h.ejections, Math.max(this.config.baseEjectionTimeMs, this.config.maxEjectionTimeMs));
    h.reason = reason;
    this.onChange?.(id, true, reason);
  }

  /** At most maxEjectionPercent of the endpoints out at once, but always at least one may be. */
  #mayEject(now: number): boolean {
    let ejected = 0;
    for (const h of this.#hosts.values()) if (this.#isEjected(h, now)) ejected++;
    const limit = Math.max(1, Math.floor((this.#hosts.size * this.config.maxEjectionPercent) / 100));
    return ejected < limit;
  }

  #isEjected(h: HostState, now: number): boolean {
    return h.ejectedUntil !== 0 && h.ejectedUntil > now;
  }

  view(): OutlierHostView[] {
    const now = this.#now();
    return [...this.#hosts].map(([id, h]) => ({
      id,
      ejected: this.#isEjected(h, now),
      reason: this.#isEjected(h, now) ? h.reason : undefined,
      ejectedForMs: this.#isEjected(h, now) ? h.ejectedUntil - now : 0,
      totalEjections: h.totalEjections,
    }));
  }
}

function newHost(): HostState {
  return { consecutive5xx: 0, consecutiveGateway: 0, requests: 0, successes: 0, ejections: 0, ejectedUntil: 0, reason: undefined, totalEjections: 0 };
}
