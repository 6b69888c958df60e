// Round robin over a backend's usable endpoints (weights ignored: use random or a
// load-aware balancer to weight endpoints).
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, type PickResult } from './balancer.js';

export class RoundRobinBalancer extends BaseBalancer {
  #next: number;

  constructor(endpoints: readonly Endpoint[]) {
    super(endpoints);
    // Start at a random place so many proxies don't all hit the first endpoint together.
    this.#next = endpoints.length > 0 ? Math.floor(Math.random() * endpoints.length) : 0;
  }

  pick(exclude?: ReadonlySet<string>): PickResult {
    const n = this.endpoints.length;
    const now = this.downClock();
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[(this.#next + i) % n]!;
      if (this.usable(e, exclude, now)) {
        this.#next = (this.#next + i + 1) % n;
        return { type: 'pick', endpoint: e };
      }
    }
    return this.fallback(exclude);
  }
}
