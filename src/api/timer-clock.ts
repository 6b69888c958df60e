// The clock and timers of a loop that both sides run: the global rate-limit quota loop
// (the control plane rebalances quotas every second, each proxy reports its demand every
// second and takes tokens from buckets on the same clock). Real ones by default; a test
// passes one manual clock to the control plane and to the proxies, so the loop's
// accuracy is checked against the time the loop itself sees, not the wall clock of a
// busy machine. The certificate renewer's and the push debounce's clocks are this one too.

/** Monotonic milliseconds and one-shot timers. */
export interface TimerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** performance.now, and timers that keep no process alive. */
export const REAL_TIMER_CLOCK: TimerClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Calls `fn` every `ms` on `clock` until the returned function is called. Each turn is
 * armed when the previous one ran (a one-shot timer), so a manual clock drives it as it
 * drives any other timer.
 */
export function every(clock: TimerClock, ms: number, fn: () => void): () => void {
  let handle: unknown;
  let stopped = false;
  const arm = (): void => {
    handle = clock.setTimeout(() => {
      if (stopped) return;
      arm();
      fn();
    }, ms);
  };
  arm();
  return () => {
    stopped = true;
    clock.clearTimeout(handle);
  };
}
