// The buckets of a keyed limit (per caller, per header value), bounded: at most `max`
// keys, the least recently used dropped first and its bucket reused for the newcomer, so
// a client cycling header values costs a bounded table and no garbage. A dropped key
// starts again with a full bucket, which is why a keyed limit alone does not stop a
// client that invents keys: a limit on the whole service (or route) beside it does.
import { TokenBucket } from './token-bucket.js';

export class KeyTable {
  /** Map iteration order is insertion order: the first key is the least recently used. */
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #max: number;
  readonly #ratePerMs: number;
  readonly #capacity: number;
  /** Keys dropped to make room, since the table was made. */
  evictions = 0;

  constructor(max: number, ratePerMs: number, capacity: number) {
    this.#max = Math.max(1, max);
    this.#ratePerMs = ratePerMs;
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** The bucket of `key`, made (or taken over from the least recently used key) when new. */
  bucket(key: string, now: number): TokenBucket {
    const m = this.#buckets;
    let b = m.get(key);
    if (b !== undefined) {
      // Most recently used: moved to the end of the order.
      m.delete(key);
      m.set(key, b);
      return b;
    }
    if (m.size >= this.#max) {
      const oldest = m.keys().next().value as string;
      b = m.get(oldest)!;
      m.delete(oldest);
      b.reset(now);
      this.evictions++;
    } else {
      b = new TokenBucket(this.#ratePerMs, this.#capacity, now);
    }
    m.set(key, b);
    return b;
  }
}
