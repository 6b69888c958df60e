// The bookkeeping of one exchange's attempts, kept by the balance layer: it opens an
// attempt when it picks an endpoint (`balancer.started`), and closes it, exactly once,
// from the outcome that ends it on the way back: the response head (the round trip
// ends there, as Linkerd measures it), no answer (refused, reset, timed out), or the
// exchange ending with the attempt still open (the client went away). Closing tells
// the balancer (pending count, round-trip sample) and the destination's outlier
// detector (a status, or no answer).
import type { Endpoint } from '../../api/protocol.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { outcomeOf } from '../resilience/outlier-detector.js';
import type { CompiledBackend } from '../routing/router.js';

/** `status` of an attempt that ended with no answer: refused, reset, timed out. */
export const NO_ANSWER = 0;
/** `status` of an attempt nobody waits for any more (the client left): not the endpoint's fault. */
export const ABANDONED = -1;

/** A failure for balancing: no answer, a 5xx or a 429. */
export function failedStatus(status: number): boolean {
  return status === NO_ANSWER || status >= 500 || status === 429;
}

/** One exchange's attempts: the one open now, and the endpoints a connect already failed to. */
export class Attempts {
  /** The backend whose balancer has the open attempt; undefined: none open. */
  #backend: CompiledBackend | undefined;
  #endpoint: Endpoint | undefined;
  /** The circuit breaker counting the open attempt. */
  #breaker: CircuitBreaker | undefined;
  /** Endpoints this request already failed to connect to (the balancer never picks them again). */
  tried: Set<string> | undefined;
  /** Why the last connect failed, when one did. */
  connectError = '';

  get open(): boolean {
    return this.#backend !== undefined;
  }

  /** Opens an attempt to `e` of `b`; one still open (never closed) is closed first as abandoned. */
  start(b: CompiledBackend, e: Endpoint): void {
    if (this.#backend !== undefined) this.end(ABANDONED, 0);
    this.#backend = b;
    this.#endpoint = e;
    b.balancer.started(e);
    const br = b.breaker;
    if (br !== undefined) {
      br.requests++;
      this.#breaker = br;
    }
  }

  /**
   * Closes the open attempt, if any: `status` is the response status, {@link NO_ANSWER}
   * or {@link ABANDONED}; `sentAt` the performance.now() the request went out (0: never
   * sent, no round-trip sample beyond the failure penalty).
   */
  end(status: number, sentAt: number): void {
    const b = this.#backend;
    const e = this.#endpoint;
    if (b === undefined || e === undefined) return;
    this.#backend = undefined;
    const br = this.#breaker;
    if (br !== undefined) {
      this.#breaker = undefined;
      br.requests--;
    }
    const now = performance.now();
    const rtt = sentAt > 0 ? now - sentAt : 0;
    if (status === ABANDONED) {
      b.balancer.finished(e, rtt, false, now);
      return;
    }
    b.balancer.finished(e, rtt, failedStatus(status), now);
    b.outliers?.report(e.id, outcomeOf(status), now);
  }

  /** Connecting to `e` of `b` failed: the balancer backs off it and this request won't pick it again. */
  refused(b: CompiledBackend, e: Endpoint, reason: string): number {
    b.balancer.connectFailed(e, Date.now());
    (this.tried ??= new Set()).add(e.id);
    this.connectError = reason;
    return this.tried.size;
  }
}
