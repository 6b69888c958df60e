// HTTPRoute rule timeouts (Gateway API GEP-1742). This layer only stamps the exchange:
// `deadline` for timeouts.request (the whole exchange, retries and fault delays
// included, measured from the request head's arrival) and `attemptTimeoutMs` for
// timeouts.backendRequest (each attempt's wait for a response head). The pool's one
// sweep timer enforces both (pool.ts), so no request arms a timer of its own; the
// sweep runs often enough for the shortest timeout in the snapshot (sweepIntervalMs).
// Once a response has started, it streams on: the timeouts bound the wait for its head.
import type { Layer } from './exchange.js';
import type { CompiledUpstream } from './router.js';

export const timeouts: Layer = (next) => (ex) => {
  const t = ex.route!.timeouts;
  if (t !== undefined) {
    if (t.requestMs !== undefined) ex.deadline = ex.startedAt + t.requestMs;
    if (t.backendRequestMs !== undefined) ex.attemptTimeoutMs = t.backendRequestMs;
  }
  next(ex);
};

/** The slowest sweep that still fires a timeout within a quarter of its length (10-250 ms). */
export function sweepIntervalMs(upstreams: Iterable<CompiledUpstream>, slowest = 250): number {
  let shortest = Infinity;
  for (const u of upstreams) {
    for (const r of u.routes) {
      const t = r.timeouts;
      if (t === undefined) continue;
      if (t.requestMs !== undefined && t.requestMs < shortest) shortest = t.requestMs;
      if (t.backendRequestMs !== undefined && t.backendRequestMs < shortest) shortest = t.backendRequestMs;
    }
  }
  return Math.max(10, Math.min(slowest, Math.floor(shortest / 4)));
}
