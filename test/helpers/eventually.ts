// Polls a condition instead of sleeping a fixed time before an assertion: the test
// moves on as soon as the condition holds, and fails with the last error when it never
// does within `timeoutMs` (a bound for a broken build, not a timing expectation).
import { setTimeout as sleep } from 'node:timers/promises';

/** Calls `check` until it returns without throwing (its value is returned), or rethrows its last error after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, { timeoutMs = 10_000, intervalMs = 20 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await sleep(intervalMs);
  }
}
