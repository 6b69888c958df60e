// Random choice in proportion to endpoint weights: no state shared between requests,
// so many proxies spread evenly without coordinating.
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, type PickResult } from './balancer.js';

export class RandomBalancer extends BaseBalancer {
  readonly #random: () => number;

  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    super(endpoints);
    this.#random = random;
  }

  pick(exclude?: ReadonlySet<string>): PickResult {
    return this.pickWeighted(exclude, this.downClock(), this.#random);
  }
}
