// Polls a condition instead of sleeping a fixed time before an assertion: the test
// moves on as soon as the condition holds, and fails naming what it waited for when it
// never does within `timeoutMs` (a bound for a broken build, not a timing expectation).

/**
 * Resolves with `fn()`'s first truthy value. A falsy value or a throw means "not yet";
 * after `timeoutMs` it rejects naming `what` (with the last error thrown, if any).
 */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 3000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${last instanceof Error ? last.message : String(last)}`}`, { cause: last });
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
