// A sidecar's rate limits across snapshots and the control stream: the limits in force
// (rebuilt per snapshot, keeping unchanged limits' buckets), the quotas the control
// plane sent for global limits (kept by limit id, so a limit rebuilt by a new snapshot
// takes its quota at once, and kept while the control plane is unreachable), and the
// demand report sent every RATE_REPORT_INTERVAL_MS while any limit is global.
import { RATE_REPORT_INTERVAL_MS, type RateDemandMessage, type RateQuotaMessage, type RateLimitsSnapshot } from '../../api/protocol.js';
import { every, REAL_TIMER_CLOCK, type TimerClock } from '../../api/timer-clock.js';
import { RateLimits } from './rate-limits.js';

export interface RateLimitStateOptions {
  /** Sends a demand report on the control stream; false when the stream is down (the counts are kept for the next). */
  report(msg: RateDemandMessage): boolean;
  /** The buckets' time and the report timer; real ones by default (tests pass a manual clock). */
  clock?: TimerClock;
  /** The report period; RATE_REPORT_INTERVAL_MS by default (tests shorten it). */
  reportIntervalMs?: number;
}

export class RateLimitState {
  #current: RateLimits | undefined;
  /** The last quota of each global limit, by limit id. */
  readonly #quotas = new Map<string, { requestsPerSecond: number; burst: number }>();
  readonly #o: RateLimitStateOptions;
  readonly #clock: TimerClock;
  /** Stops the report timer; undefined while no limit is global. */
  #stopReports: (() => void) | undefined;
  #lastReport: number;

  constructor(o: RateLimitStateOptions) {
    this.#o = o;
    this.#clock = o.clock ?? REAL_TIMER_CLOCK;
    this.#lastReport = this.#clock.now();
  }

  /** The rate limits in force; undefined: none. */
  get current(): RateLimits | undefined {
    return this.#current;
  }

  /**
   * Compiles a snapshot's rate limits (throws when they can't be held: the snapshot is
   * refused); `commit` then puts them in force. Two steps, so a snapshot refused for
   * another reason leaves the limits in force alone.
   */
  prepare(snap: RateLimitsSnapshot | undefined): () => void {
    if (snap === undefined || !Array.isArray(snap.limits) || snap.limits.length === 0) return () => this.#set(undefined);
    const next = new RateLimits(snap, this.#current, this.#clock.now());
    return () => this.#set(next);
  }

  #set(next: RateLimits | undefined): void {
    this.#current = next;
    const now = this.#clock.now();
    for (const l of next?.globals() ?? []) {
      const q = this.#quotas.get(l.spec.id);
      if (q !== undefined && l.quotaPerSecond === undefined) l.setQuota(q.requestsPerSecond, q.burst, now);
    }
    const wantsReports = next !== undefined && next.globals().length > 0;
    if (wantsReports && this.#stopReports === undefined) {
      this.#lastReport = now;
      this.#stopReports = every(this.#clock, this.#o.reportIntervalMs ?? RATE_REPORT_INTERVAL_MS, () => this.reportNow());
    } else if (!wantsReports && this.#stopReports !== undefined) {
      this.#stopReports();
      this.#stopReports = undefined;
    }
  }

  /** A quota message from the control plane. Malformed entries are skipped. */
  onQuota(msg: RateQuotaMessage): void {
    if (!Array.isArray(msg.quotas)) return;
    const now = this.#clock.now();
    const globals = this.#current?.globals() ?? [];
    for (const q of msg.quotas) {
      if (typeof q !== 'object' || q === null || typeof q.id !== 'string') continue;
      const { requestsPerSecond: rate, burst } = q;
      if (!Number.isFinite(rate) || rate < 0 || !Number.isFinite(burst) || burst < 0) continue;
      this.#quotas.set(q.id, { requestsPerSecond: rate, burst });
      for (const l of globals) if (l.spec.id === q.id) l.setQuota(rate, burst, now);
    }
  }

  /** Sends the demand of every global limit since the last report (the timer calls it). */
  reportNow(): void {
    const globals = this.#current?.globals() ?? [];
    if (globals.length === 0) return;
    const now = this.#clock.now();
    const msg: RateDemandMessage = {
      type: 'rate-demand',
      intervalMs: Math.max(1, Math.round(now - this.#lastReport)),
      limits: globals.map((l) => ({ id: l.spec.id, requests: l.offered })),
    };
    if (!this.#o.report(msg)) return;
    this.#lastReport = now;
    for (const l of globals) l.offered = 0;
  }

  /** The clock the buckets are read on (the rate-limit layer's). */
  now(): number {
    return this.#clock.now();
  }

  stop(): void {
    this.#stopReports?.();
    this.#stopReports = undefined;
  }
}
