// Random choice in proportion to endpoint weights: no state shared between requests,
// so many proxies spread evenly without coordinating.
import type { Endpoint } from '../../control/protocol.js';
import { BaseBalancer, weightOf, type PickResult } from './balancer.js';

export class RandomBalancer extends BaseBalancer {
  readonly #random: () => number;

  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    super(endpoints);
    this.#random = random;
  }

  pick(exclude?: ReadonlySet<string>): PickResult {
    const now = this.downClock();
    let total = 0;
    for (const e of this.endpoints) if (this.usable(e, exclude, now)) total += weightOf(e);
    if (total === 0) return this.fallback(exclude);
    let x = this.#random() * total;
    let last: Endpoint | undefined;
    for (const e of this.endpoints) {
      if (!this.usable(e, exclude, now)) continue;
      last = e;
      x -= weightOf(e);
      if (x < 0) return { type: 'pick', endpoint: e };
    }
    return { type: 'pick', endpoint: last! };
  }
}
