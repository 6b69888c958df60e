// Round robin over a backend's healthy endpoints, skipping for a short while any
// endpoint that just refused a connection (the control plane's health checks take
// seconds to notice a dead instance; the data plane notices at once).
import type { Endpoint } from '../../control/protocol.js';
import { CONNECT_FAILURE_BACKOFF_MS, endpointKey, type Balancer, type PickResult } from './balancer.js';

export class RoundRobinBalancer implements Balancer {
  readonly endpoints: readonly Endpoint[];
  #next = 0;
  readonly #downUntil = new Map<string, number>();

  constructor(endpoints: readonly Endpoint[]) {
    this.endpoints = endpoints;
    // Start at a random place so many proxies don't all hit the first endpoint together.
    this.#next = endpoints.length > 0 ? Math.floor(Math.random() * endpoints.length) : 0;
  }

  pick(exclude?: ReadonlySet<string>): PickResult {
    const n = this.endpoints.length;
    if (n === 0) return { type: 'fail', code: 'TRELLIS_E_NO_ENDPOINTS' };
    const now = this.#downUntil.size > 0 ? Date.now() : 0;
    let fallback: Endpoint | undefined;
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[(this.#next + i) % n]!;
      const excluded = exclude !== undefined && exclude.has(e.id);
      const down = now !== 0 && this.#isDown(e, now);
      if (!excluded && !down) {
        this.#next = (this.#next + i + 1) % n;
        return { type: 'pick', endpoint: e };
      }
      if (!excluded) fallback ??= e;
    }
    // Every endpoint is either tried or recently down: a recently-down one beats none.
    if (fallback) return { type: 'pick', endpoint: fallback };
    return { type: 'fail', code: 'TRELLIS_E_NO_ENDPOINTS' };
  }

  #isDown(e: Endpoint, now: number): boolean {
    const key = endpointKey(e);
    const until = this.#downUntil.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#downUntil.delete(key);
    return false;
  }

  connectFailed(endpoint: Endpoint, now: number): void {
    this.#downUntil.set(endpointKey(endpoint), now + CONNECT_FAILURE_BACKOFF_MS);
  }
}
