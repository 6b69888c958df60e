// Peak EWMA with the power of two choices, as Linkerd balances (tower's PeakEwma):
// each endpoint's cost is its round-trip estimate × (requests in flight + 1); of two
// endpoints drawn at random the cheaper wins.
//
// The estimate is "peak" sensitive: a sample slower than the estimate replaces it at
// once, while faster samples pull it down gradually (an exponentially weighted moving
// average whose weight decays with the time since the last update, τ = 10 s). Between
// samples the estimate decays towards zero, so an endpoint that was slow is tried
// again after a while instead of being starved forever. A new endpoint starts at
// 30 ms, so it is neither flooded nor ignored.
//
// Latency alone rewards an endpoint that fails fast (an instant 500 is a very good
// round trip): a failed request counts as a sample of at least FAILURE_PENALTY_MS, so
// a failing endpoint costs more than a slow healthy one and loses nearly every draw
// until the penalty decays.
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, PendingCounts, picked, pickTwo, weightOf, type PickResult } from './balancer.js';

export const DEFAULT_RTT_MS = 30;
export const DECAY_MS = 10_000;
export const FAILURE_PENALTY_MS = 250;

interface Estimate {
  rttMs: number;
  /** When the estimate was last updated (ms, the balancer's clock). */
  at: number;
}

export class PeakEwmaBalancer extends BaseBalancer {
  pending = new PendingCounts();
  readonly #estimates = new Map<string, Estimate>();
  readonly #random: () => number;
  readonly #now: () => number;

  constructor(endpoints: readonly Endpoint[], opts: { random?: () => number; now?: () => number } = {}) {
    super(endpoints);
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? (() => performance.now());
    // Every endpoint starts at the default, decaying from now like any estimate: one
    // never sampled is tried once the others' costs rise above its decayed default.
    const now = this.#now();
    for (const e of endpoints) this.#estimates.set(e.id, { rttMs: DEFAULT_RTT_MS, at: now });
  }

  /**
   * Takes over the state of the balancer this one replaces (a new snapshot changed the
   * endpoints): the estimates of endpoints that stay, and the pending counts, shared, so
   * requests started on the old balancer still count here and end there without leaking.
   */
  adopt(prev: PeakEwmaBalancer): void {
    this.pending = prev.pending;
    for (const e of this.endpoints) {
      const old = prev.#estimates.get(e.id);
      if (old !== undefined) this.#estimates.set(e.id, { rttMs: old.rttMs, at: old.at });
    }
  }

  // The current pick's inputs, read by the two callbacks made once below: a pick on the
  // hot path allocates no closures.
  #pickExclude: ReadonlySet<string> | undefined;
  #pickDown = 0;
  #pickNow = 0;
  readonly #isUsable = (x: Endpoint): boolean => this.usable(x, this.#pickExclude, this.#pickDown);
  readonly #cheaper = (a: Endpoint, b: Endpoint): Endpoint => {
    // The clock is read only when there is a choice to make (not for a single endpoint).
    const now = this.#pickNow || (this.#pickNow = this.#now());
    return this.cost(b, now) < this.cost(a, now) ? b : a;
  };

  pick(exclude?: ReadonlySet<string>): PickResult {
    this.#pickDown = this.downClock();
    this.#pickNow = 0;
    this.#pickExclude = exclude;
    const e = pickTwo(this, this.#isUsable, this.#cheaper, this.#random);
    this.#pickExclude = undefined;
    return e ? picked(e) : this.fallback(exclude);
  }

  /** The endpoint's cost now: decayed estimate × (pending + 1), per unit of weight. */
  cost(e: Endpoint, now = this.#now()): number {
    return (this.estimate(e, now) * (this.pending.of(e) + 1)) / weightOf(e);
  }

  /** The round-trip estimate, decayed to `now` (as a zero sample would), ms. */
  estimate(e: Endpoint, now = this.#now()): number {
    const est = this.#estimates.get(e.id);
    return est === undefined ? DEFAULT_RTT_MS : update(est, 0, now);
  }

  override started(e: Endpoint): void {
    this.pending.inc(e);
  }

  override finished(e: Endpoint, rttMs: number, failed: boolean, now: number = this.#now()): void {
    this.pending.dec(e);
    const sample = failed ? Math.max(rttMs, FAILURE_PENALTY_MS) : rttMs;
    const est = this.#estimates.get(e.id);
    if (est !== undefined) update(est, Math.max(0, sample), now); // an endpoint no longer ours is ignored
  }
}

/** tower's `RttEstimate::update`: a slower sample is taken whole; a faster one is averaged in by recency. */
function update(est: Estimate, sampleMs: number, now: number): number {
  if (sampleMs > est.rttMs) {
    est.rttMs = sampleMs;
  } else {
    const elapsed = Math.max(0, now - est.at);
    const decay = Math.exp(-elapsed / DECAY_MS);
    est.rttMs = est.rttMs * decay + sampleMs * (1 - decay);
  }
  est.at = now;
  return est.rttMs;
}
