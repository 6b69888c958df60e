// Least request with the power of two choices: two endpoints drawn at random, the one
// with fewer requests in flight (per unit of weight) wins. Cheaper than scanning every
// endpoint, and it avoids the herd that "always the least loaded" makes when many
// proxies see the same counts.
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, PendingCounts, picked, pickTwo, weightOf, type PickResult } from './balancer.js';

export class LeastRequestBalancer extends BaseBalancer {
  pending = new PendingCounts();
  readonly #random: () => number;

  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    super(endpoints);
    this.#random = random;
  }

  /** Shares the pending counts of the balancer this one replaces (see PeakEwmaBalancer.adopt). */
  adopt(prev: LeastRequestBalancer): void {
    this.pending = prev.pending;
  }

  pick(exclude?: ReadonlySet<string>): PickResult {
    const now = this.downClock();
    const e = pickTwo(
      this,
      (x) => this.usable(x, exclude, now),
      (a, b) => (this.#load(b) < this.#load(a) ? b : a),
      this.#random,
    );
    return e ? picked(e) : this.fallback(exclude);
  }

  #load(e: Endpoint): number {
    return (this.pending.of(e) + 1) / weightOf(e);
  }

  override started(e: Endpoint): void {
    this.pending.inc(e);
  }

  override finished(e: Endpoint): void {
    this.pending.dec(e);
  }
}
