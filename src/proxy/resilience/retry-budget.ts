// The retry budget of one destination service in one sidecar, as Linkerd's (and
// tower's): over a sliding window, retries may be `percent` of the requests plus
// `minRetries` per `minIntervalMs`. When the destination is down every request fails,
// and without a budget each would be sent `attempts + 1` times; with it the extra load
// stays a fixed share, so retries cannot make an outage worse.
//
// The window is a ring of ten slots, so recording costs an index and an increment and
// old requests fall out a slot at a time. The clock is injected so tests can move time.
import type { RetryBudgetConfig } from '../../api/protocol.js';

const SLOTS = 10;

export class RetryBudget {
  readonly config: RetryBudgetConfig;
  readonly #now: () => number;
  readonly #slotMs: number;
  readonly #requests = new Float64Array(SLOTS);
  readonly #retries = new Float64Array(SLOTS);
  /** Index (time / slotMs) of the newest slot. */
  #current = 0;
  readonly #reserve: number;

  constructor(config: RetryBudgetConfig, now: () => number = () => performance.now()) {
    this.config = config;
    this.#now = now;
    this.#slotMs = config.windowMs / SLOTS;
    this.#current = Math.floor(now() / this.#slotMs);
    // The minimum rate, expressed as retries per window.
    this.#reserve = config.minIntervalMs > 0 ? (config.minRetries * config.windowMs) / config.minIntervalMs : 0;
  }

  #roll(): number {
    const slot = Math.floor(this.#now() / this.#slotMs);
    if (slot !== this.#current) {
      // Clear the slots that fell out of the window since the last call.
      const stale = Math.min(slot - this.#current, SLOTS);
      for (let i = 1; i <= stale; i++) {
        const k = (this.#current + i) % SLOTS;
        this.#requests[k] = 0;
        this.#retries[k] = 0;
      }
      this.#current = slot;
    }
    return slot % SLOTS;
  }

  /** Counts one original request (not a retry) towards the budget. */
  deposit(): void {
    this.#requests[this.#roll()]!++;
  }

  /** Takes one retry from the budget; false when the budget is spent (do not retry). */
  withdraw(): boolean {
    const k = this.#roll();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < SLOTS; i++) {
      requests += this.#requests[i]!;
      retries += this.#retries[i]!;
    }
    if (retries + 1 > (requests * this.config.percent) / 100 + this.#reserve) return false;
    this.#retries[k]!++;
    return true;
  }

  /** True when this budget was made from the same settings (kept across snapshots). */
  sameAs(c: RetryBudgetConfig): boolean {
    const o = this.config;
    return o.percent === c.percent && o.windowMs === c.windowMs && o.minRetries === c.minRetries && o.minIntervalMs === c.minIntervalMs;
  }
}
