// A token bucket on an injected clock: `capacity` tokens at most, refilled at `ratePerMs`,
// one taken per request. Refilled lazily from the time of the last look, so a bucket
// costs nothing between requests and needs no timer (Envoy's local rate limit refills
// on a timer per bucket; lazily, a million idle keys cost no CPU).

export class TokenBucket {
  tokens: number;
  /** Clock time (ms) of the last refill. */
  at: number;
  ratePerMs: number;
  capacity: number;

  constructor(ratePerMs: number, capacity: number, now: number) {
    this.ratePerMs = ratePerMs;
    this.capacity = capacity;
    this.tokens = capacity;
    this.at = now;
  }

  /** Adds what accrued since the last refill, up to the capacity. */
  refill(now: number): void {
    if (now <= this.at) return;
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.at) * this.ratePerMs);
    this.at = now;
  }

  /** Milliseconds until the bucket holds `n` tokens (0: it does); Infinity at a rate of 0. */
  msUntil(n: number): number {
    if (this.tokens >= n) return 0;
    return this.ratePerMs > 0 ? (n - this.tokens) / this.ratePerMs : Number.POSITIVE_INFINITY;
  }

  /** Full again, as if new (a reused bucket of the key table). */
  reset(now: number): void {
    this.tokens = this.capacity;
    this.at = now;
  }

  /** A new rate and size (a new quota): what accrued so far is kept, up to the new size. */
  setRate(ratePerMs: number, capacity: number, now: number): void {
    this.refill(now);
    this.ratePerMs = ratePerMs;
    this.capacity = capacity;
    if (this.tokens > capacity) this.tokens = capacity;
  }
}
