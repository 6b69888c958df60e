// Maglev consistent hashing (Google's Maglev paper, as Envoy's maglev balancer): a
// lookup table of prime size M is filled by letting each endpoint claim slots in the
// order of its own permutation, taking turns in proportion to weight. A key's hash
// indexes the table: one array read per request, near-perfect balance, and when an
// endpoint leaves only a little more than its own share of keys moves.
//
// M is the first prime in the list at least 100 × the endpoint count, which keeps the
// imbalance under about 1% while a small backend's table stays small (a 3-endpoint
// backend needs 307 slots, not Envoy's fixed 65,537).
//
// A request without a key is spread at random. When the owner can't take the request,
// the key is rehashed with the attempt number, so its second choice is stable too.
import type { Endpoint } from '../../api/protocol.js';
import { BaseBalancer, weightOf, type PickResult } from './balancer.js';
import { hash32 } from './hash.js';

const PRIMES = [307, 503, 1009, 2003, 4001, 8009, 16007, 32003, 65537];

export class MaglevBalancer extends BaseBalancer {
  readonly #table: Uint16Array;
  /** False when every endpoint weighs 0: the table owns nothing and keys are spread at random. */
  readonly #hashable: boolean;
  readonly #random: () => number;

  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    super(endpoints);
    this.#random = random;
    this.#hashable = endpoints.some((e) => weightOf(e) > 0);
    const size = PRIMES.find((p) => p >= 100 * endpoints.length) ?? PRIMES[PRIMES.length - 1]!;
    this.#table = buildTable(endpoints, size);
  }

  /** The table's size (a prime). */
  get size(): number {
    return this.#table.length;
  }

  pick(exclude?: ReadonlySet<string>, hashKey?: string): PickResult {
    const now = this.downClock();
    if (hashKey === undefined || !this.#hashable) return this.pickWeighted(exclude, now, this.#random);
    const m = this.#table.length;
    for (let attempt = 0; attempt < this.endpoints.length * 2; attempt++) {
      const h = attempt === 0 ? hash32(hashKey) : hash32(hashKey, attempt);
      const e = this.endpoints[this.#table[h % m]!]!;
      if (this.usable(e, exclude, now)) return { type: 'pick', endpoint: e };
    }
    // Rehashing kept landing on unusable ones: any usable endpoint, in order.
    for (const e of this.endpoints) if (this.usable(e, exclude, now)) return { type: 'pick', endpoint: e };
    return this.fallback(exclude);
  }
}

/**
 * The Maglev population: endpoint i's preference list is offset_i + j·skip_i (mod M);
 * endpoints take turns claiming their next free preferred slot, a heavier endpoint
 * taking proportionally more turns (Envoy's weighted variant), until every slot is owned.
 */
function buildTable(endpoints: readonly Endpoint[], m: number): Uint16Array {
  const table = new Uint16Array(m);
  // Turns are taken in id order, not list order, so every proxy builds the same table.
  const live = endpoints
    .map((e, i) => ({ i, w: weightOf(e) }))
    .filter((x) => x.w > 0)
    .sort((a, b) => (endpoints[a.i]!.id < endpoints[b.i]!.id ? -1 : 1));
  if (live.length === 0) return table;
  const maxW = Math.max(...live.map((x) => x.w));
  const offset = live.map((x) => hash32(endpoints[x.i]!.id, 0x6d61676c) % m);
  const skip = live.map((x) => (hash32(endpoints[x.i]!.id, 0x65762121) % (m - 1)) + 1);
  const next = live.map(() => 0);
  const credit = live.map(() => 0);
  const taken = new Uint8Array(m);
  let filled = 0;
  for (;;) {
    for (let k = 0; k < live.length; k++) {
      credit[k]! += live[k]!.w / maxW;
      if (credit[k]! < 1) continue;
      credit[k]! -= 1;
      let c: number;
      do {
        c = (offset[k]! + next[k]! * skip[k]!) % m;
        next[k]!++;
      } while (taken[c] === 1);
      taken[c] = 1;
      table[c] = live[k]!.i;
      if (++filled === m) return table;
    }
  }
}
