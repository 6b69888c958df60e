// Consistent hashing on a ring (Ketama; Envoy's ring_hash is the same idea): each
// endpoint owns points on a 32-bit ring in proportion to its weight, and a request's
// affinity key goes to the owner of the first point at or after the key's hash. When
// an endpoint leaves, only the keys it owned move; the others stay where they were.
//
// A request without a key is spread at random. When the owner can't take the request
// (tried already, refusing connections), the walk goes on round the ring to the next
// usable endpoint, so a key's second choice is stable too.
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, weightOf, type PickResult } from './balancer.js';
import { hash32 } from './hash.js';

/**
 * Points per unit of weight, as Ketama's 160 per server. A fixed count per endpoint
 * (rather than a fixed ring size shared out) is what keeps the stayers' points where
 * they were when an endpoint leaves, so none of their keys move.
 */
export const POINTS_PER_WEIGHT = 160;
/** Beyond this many points, every endpoint's count is scaled down alike. */
const MAX_POINTS = 65_536;

export class RingHashBalancer extends BaseBalancer {
  /** Sorted point hashes, and the index into `endpoints` that owns each. */
  readonly #points: Uint32Array;
  readonly #owners: Uint16Array;
  readonly #random: () => number;

  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    super(endpoints);
    this.#random = random;
    const total = endpoints.reduce((t, e) => t + weightOf(e), 0) * POINTS_PER_WEIGHT;
    const scale = total > MAX_POINTS ? MAX_POINTS / total : 1;
    const pairs: [number, number][] = [];
    endpoints.forEach((e, i) => {
      const w = weightOf(e);
      if (w === 0) return;
      const n = Math.max(1, Math.round(POINTS_PER_WEIGHT * w * scale));
      for (let k = 0; k < n; k++) pairs.push([hash32(`${e.id}_${k}`), i]);
    });
    // Ties (a 32-bit collision) are broken by id, so every proxy builds the same ring.
    pairs.sort((a, b) => a[0] - b[0] || (endpoints[a[1]]!.id < endpoints[b[1]]!.id ? -1 : 1));
    this.#points = Uint32Array.from(pairs, (p) => p[0]);
    this.#owners = Uint16Array.from(pairs, (p) => p[1]);
  }

  pick(exclude?: ReadonlySet<string>, hashKey?: string): PickResult {
    const now = this.downClock();
    if (hashKey === undefined || this.#points.length === 0) return this.pickWeighted(exclude, now, this.#random);
    const h = hash32(hashKey);
    // First point ≥ h (binary search), wrapping round.
    let lo = 0;
    let hi = this.#points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const n = this.#points.length;
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[this.#owners[(lo + i) % n]!]!;
      if (this.usable(e, exclude, now)) return { type: 'pick', endpoint: e };
    }
    return this.fallback(exclude);
  }
}
