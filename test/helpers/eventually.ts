// The one poll the tests use instead of sleeping a fixed time before an assertion: the
// test moves on as soon as the condition holds, and fails with the last error when it
// never does within `timeoutMs` (a bound for a broken build, not a timing expectation:
// keep it generous, a busy machine only makes the poll take longer).
import { setTimeout as timersSleep } from 'node:timers/promises';

// Taken once, when this module loads: node:test's mock timers replace the timer functions
// (those of node:timers/promises too) and Date, and a test that mocks them may still poll.
const sleep = timersSleep;
const now = (): number => performance.now();

export interface EventuallyOptions {
  /** Give up after this long (default 10 s). */
  readonly timeoutMs?: number;
  /** Pause between two checks (default 20 ms). */
  readonly intervalMs?: number;
  /** What is awaited, for the message when a check that returns `false` times out. */
  readonly what?: string;
}

/**
 * Calls `check` until it holds, and returns what it returned. A check holds when it
 * returns (or resolves) without throwing and its value is not `false`: assertions inside
 * it (`assert.equal(...)`) and plain conditions (`() => n === 3`) both work. A check that
 * finds something returns it (`assert.ok(found); return found`), as a find that returns
 * `undefined` would hold at once. After `timeoutMs` the last assertion error is rethrown,
 * or, if the last check returned `false`, an error naming `what`.
 */
export async function eventually<T>(check: () => T | Promise<T>, options: EventuallyOptions = {}): Promise<Exclude<T, false>> {
  const { timeoutMs = 10_000, intervalMs = 20, what = 'the condition' } = options;
  const deadline = now() + timeoutMs;
  for (;;) {
    let failure: unknown;
    try {
      const value = await check();
      if (value !== false) return value as Exclude<T, false>;
      failure = new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    } catch (err) {
      failure = err;
    }
    if (now() >= deadline) throw failure;
    await sleep(intervalMs);
  }
}
