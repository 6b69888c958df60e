// When to recompile and push after the model changes (issue 17). As istiod's debounce
// (pilot/pkg/xds/discovery.go: PILOT_DEBOUNCE_AFTER, PILOT_DEBOUNCE_MAX): a push waits
// until the changes have been quiet for `quietMs`, and never longer than `maxDelayMs`
// after the first change it carries. A lone change (one route edited) goes out after the
// short quiet period; a registration storm or a rolling restart, whose changes keep
// coming, coalesces into one push per `maxDelayMs` instead of one per change.
//
// The push itself is synchronous on this thread, so istiod's "one push at a time" holds
// by construction: changes that arrive during a push start the next window.

/** The clock the debounce reads and schedules with; tests pass a manual one. */
export interface DebounceClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: DebounceClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface PushDebounceOptions {
  /** How long the changes must have been quiet before a push (default 20 ms). */
  readonly quietMs?: number;
  /** The longest a change waits for its push, however busy (default 1000 ms). */
  readonly maxDelayMs?: number;
  readonly clock?: DebounceClock;
}

export const DEFAULT_PUSH_QUIET_MS = 20;
export const DEFAULT_PUSH_MAX_DELAY_MS = 1000;

export class PushDebounce {
  readonly #quietMs: number;
  readonly #maxDelayMs: number;
  readonly #clock: DebounceClock;
  readonly #fire: () => void;
  /** When the first change of the window came (undefined: nothing pending). */
  #first: number | undefined;
  #last = 0;
  #timer: unknown;
  /** Changes coalesced into the pending push (for metrics and tests). */
  #events = 0;

  constructor(o: PushDebounceOptions, fire: () => void) {
    this.#quietMs = Math.max(0, o.quietMs ?? DEFAULT_PUSH_QUIET_MS);
    this.#maxDelayMs = Math.max(this.#quietMs, o.maxDelayMs ?? DEFAULT_PUSH_MAX_DELAY_MS);
    this.#clock = o.clock ?? realClock;
    this.#fire = fire;
  }

  /** Whether a push is pending. */
  get pending(): boolean {
    return this.#first !== undefined;
  }

  /** How many changes the pending push carries. */
  get events(): number {
    return this.#events;
  }

  /** A change happened: a push will follow. */
  trigger(): void {
    const now = this.#clock.now();
    this.#first ??= now;
    this.#last = now;
    this.#events++;
    if (this.#timer === undefined) this.#arm(this.#quietMs);
  }

  /** Pushes now if a push is pending. */
  flush(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#first === undefined) return;
    this.#first = undefined;
    this.#events = 0;
    this.#fire();
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#first = undefined;
    this.#events = 0;
  }

  #arm(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => this.#due(), Math.max(0, ms));
  }

  #due(): void {
    this.#timer = undefined;
    const first = this.#first;
    if (first === undefined) return;
    const now = this.#clock.now();
    const quietUntil = this.#last + this.#quietMs;
    const maxUntil = first + this.#maxDelayMs;
    if (now >= quietUntil || now >= maxUntil) return this.flush();
    // Changes came since the timer was set: wait for quiet again, but not past the max delay.
    this.#arm(Math.min(quietUntil, maxUntil) - now);
  }
}
