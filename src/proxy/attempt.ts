// The bookkeeping of one attempt: the balance layer opens it when it picks an endpoint
// (`balancer.started`), and whichever part of the proxy sees the attempt end closes it,
// exactly once: the upstream connection at the response head (the round trip ends
// there, as Linkerd measures it), a connect failure, a reset, a timeout, or the
// exchange ending with the attempt still open (the client went away). Closing tells
// the balancer (pending count, round-trip sample) and the destination's outlier
// detector (a status, or no answer). No closures and one clock read per attempt.
import type { CircuitBreaker } from './circuit-breaker.js';
import type { Exchange } from './exchange.js';
import { outcomeOf } from './outlier-detector.js';

/** `status` of an attempt that ended with no answer: refused, reset, timed out. */
export const NO_ANSWER = 0;
/** `status` of an attempt nobody waits for any more (the client left): not the endpoint's fault. */
export const ABANDONED = -1;

/** A failure for balancing: no answer, a 5xx or a 429. */
export function failedStatus(status: number): boolean {
  return status === NO_ANSWER || status >= 500 || status === 429;
}

/**
 * Opens an attempt on `ex.backend` with `ex.endpoint`. An attempt still open (a caller
 * that forgot to close) is closed first as abandoned, so pending counts never leak.
 */
export function startAttempt(ex: Exchange): void {
  if (ex.attemptBackend !== undefined) endAttempt(ex, ABANDONED, 0);
  const b = ex.backend!;
  ex.attemptBackend = b;
  b.balancer.started(ex.endpoint!);
  const br = b.breaker;
  if (br !== undefined) {
    br.requests++;
    ex.attemptBreaker = br;
  }
}

/**
 * The exchange ended: closes an attempt still open as abandoned (the client went away,
 * or the exchange failed around it) and gives back a retry it still held.
 */
export function settleAttempts(ex: Exchange): void {
  if (ex.attemptBackend !== undefined) endAttempt(ex, ABANDONED, ex.upstreamConn?.sentAt ?? 0);
  const held = ex.heldRetry;
  if (held !== undefined) {
    ex.heldRetry = undefined;
    held.retries--;
  }
}

/**
 * Closes the open attempt, if any: `status` is the response status, {@link NO_ANSWER}
 * or {@link ABANDONED}; `sentAt` the performance.now() the request went out (0: never
 * sent, no round-trip sample beyond the failure penalty).
 */
export function endAttempt(ex: Exchange, status: number, sentAt: number): void {
  const b = ex.attemptBackend;
  if (b === undefined) return;
  ex.attemptBackend = undefined;
  const br = ex.attemptBreaker;
  if (br !== undefined) {
    ex.attemptBreaker = undefined;
    br.requests--;
  }
  // The attempt a retry was held for is over: the retry is no longer outstanding.
  const held = ex.heldRetry;
  if (held !== undefined) {
    ex.heldRetry = undefined;
    held.retries--;
  }
  const e = ex.endpoint!;
  const now = performance.now();
  const rtt = sentAt > 0 ? now - sentAt : 0;
  if (status === ABANDONED) {
    b.balancer.finished(e, rtt, false, now);
    return;
  }
  b.balancer.finished(e, rtt, failedStatus(status), now);
  b.outliers?.report(e.id, outcomeOf(status), now);
}
