// Test helper: polls a condition until it holds, instead of sleeping a fixed time and
// hoping. Fails with `what` when it does not hold within `timeoutMs`.

/** Polls `fn` every 10 ms until it returns a truthy value, which it returns. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 3000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
