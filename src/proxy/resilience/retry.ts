// Retries of an HTTPRoute rule (Gateway API GEP-1731), with the defaults that can't
// make an outage worse:
// - only idempotent methods are replayed unless a RetryPolicy says otherwise (a POST
//   that reached the server may have done its work);
// - a body is kept for a replay only up to maxBodyBytes; a bigger one streams through
//   untouched and the request is not retried;
// - every retry takes from the destination's budget (retry-budget.ts); a spent budget
//   lets the failure through instead;
// - a failed attempt's response never reaches the client when a retry follows: the
//   codec reports the response head up through the layers before writing a byte, and
//   this layer's answer (take it) makes the codec drop it.
// A refused connection (nothing sent) is not ours: the balance layer below tries
// another endpoint for it, for every method.
//
// Without a retry policy, one replay is still made, of a request that is safe to send
// twice by any reading: a safe method (GET, HEAD, OPTIONS, TRACE) with no body, reset
// before any response byte reached the client, sent to another endpoint, within the
// destination's budget. That is what a whole instance lost (app and sidecar together)
// costs otherwise: every GET in flight on it answered 502.
import type { RetryConfig } from '../../api/protocol.js';
import { runGuarded, type Exchange, type Handler, type RetryHold } from '../stack/exchange.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import type { RetryBudget } from './retry-budget.js';
import { httpStatusOfGrpc } from '../h2/grpc.js';
import type { Layer } from '../stack/layer.js';
import type { Routed } from '../stack/decisions.js';
import type { Outcome } from '../stack/outcome.js';

import { IDEMPOTENT, sendableElsewhere } from './methods.js';

export { IDEMPOTENT, SAFE, sendableElsewhere } from './methods.js';

/**
 * The replay every request gets that its route's policy does not cover: one retry (as
 * Envoy's default num_retries), for a reset only (a slow answer or an error status is
 * not retried unasked), without backoff (the next endpoint is another instance).
 */
const RESET_REPLAY: RetryConfig = { codes: [], attempts: 1, backoffMs: 0, nonIdempotent: false, maxBodyBytes: 0 };

/** Backoff grows to at most this many times the base. */
const MAX_BACKOFF_FACTOR = 10;

/**
 * The wait before retry number `n` (0 for the first): the base doubled per retry, at
 * most ten times the base, with "equal jitter" (half fixed, half random) so the
 * retries of many failed requests spread out instead of arriving together.
 */
export function backoffDelay(baseMs: number, n: number, random: () => number = Math.random): number {
  const cap = Math.min(baseMs * 2 ** n, baseMs * MAX_BACKOFF_FACTOR);
  return cap / 2 + random() * (cap / 2);
}

/** What the retry layer reports, for metrics. */
export interface RetryObserver {
  retried(destination: string, route: string, reason: string): void;
  budgetExhausted(destination: string, route: string): void;
}

/** Why an attempt failed: a status code, or `reset` / `timeout` before any response byte. */
export type RetryReason = number | 'reset' | 'timeout';

/** What the retry layer keeps on an exchange it may send again (`ex.retry`). */
type Replayer = RetryHold;

/** The replay state of one exchange; present while it may still be sent again. */
export class RetryState implements Replayer {
  readonly #policy: RetryConfig;
  readonly #budget: RetryBudget;
  readonly #next: Handler<Routed>;
  readonly #observer: RetryObserver;
  #left: number;
  #body: Buffer[] | undefined;
  #bodyBytes = 0;
  #replayable = true;
  /** The default replay ({@link RESET_REPLAY}): resets only, and only to another endpoint. */
  readonly #resetsElsewhere: boolean;
  /** The circuit breaker holding a retry of this exchange, until the attempt it was for is over. */
  #held: CircuitBreaker | undefined;

  constructor(policy: RetryConfig, budget: RetryBudget, next: Handler<Routed>, observer: RetryObserver, resetsElsewhere = false) {
    this.#policy = policy;
    this.#budget = budget;
    this.#next = next;
    this.#observer = observer;
    this.#left = policy.attempts;
    this.#resetsElsewhere = resetsElsewhere;
  }

  /** Keeps a request body chunk for a replay, until the body passes the limit. */
  record(chunk: Buffer): void {
    if (!this.#replayable) return;
    this.#bodyBytes += chunk.length;
    if (this.#bodyBytes > this.#policy.maxBodyBytes) {
      this.#replayable = false;
      this.#body = undefined;
      return;
    }
    (this.#body ??= []).push(chunk);
  }

  /** True when a response with this status should be retried (if the rest allows). */
  retriesStatus(status: number): boolean {
    return this.#policy.codes.includes(status);
  }

  /** Gives back the retry slot held for the attempt that just ended (or the exchange). */
  settle(): void {
    const held = this.#held;
    if (held === undefined) return;
    this.#held = undefined;
    held.retries--;
  }

  /**
   * Decides on a retry after a failed attempt whose response has not reached the
   * client. True: a retry is scheduled (or the request's deadline will end it first),
   * and the failure goes no further. False: carry on as if there were no retry policy.
   */
  again(ex: Routed, reason: RetryReason): boolean {
    if (this.#left <= 0 || !this.#replayable || !ex.requestBodyDone || ex.responseStarted || ex.finished) return false;
    if (ex.client.socket.destroyed) return false;
    if (this.#resetsElsewhere && (reason !== 'reset' || !elsewhere(ex))) return false;
    const delay = backoffDelay(this.#policy.backoffMs, this.#policy.attempts - this.#left);
    const destination = ex.service;
    const route = ex.route.name;
    if (ex.deadline !== 0 && performance.now() + delay >= ex.deadline) {
      // No retry fits before the request's deadline: the request ends at it (the
      // timeouts layer answers 504 request-timeout then), as timeouts.request promises,
      // without spending budget on an attempt never sent.
      this.#left = 0;
      return true;
    }
    // A destination with a circuit breaker allows only so many retries outstanding.
    const breaker = ex.backend?.breaker;
    if (breaker !== undefined && !breaker.takeRetry()) return false;
    if (!this.#budget.withdraw()) {
      if (breaker !== undefined) breaker.retries--;
      this.#observer.budgetExhausted(destination, route);
      return false;
    }
    this.#held = breaker;
    this.#left--;
    this.#observer.retried(destination, route, String(reason));
    ex.attempts++;
    // A fresh connect-attempt count, avoiding the endpoint that just failed when the
    // backend has another (the balancer never picks an excluded endpoint).
    const tries = ex.tries;
    if (tries !== undefined) {
      tries.tried =
        ex.endpoint !== undefined && ex.backend !== undefined && (ex.backend.balancer.endpoints.length > 1 || this.#resetsElsewhere)
          ? new Set([ex.endpoint.id])
          : undefined;
      tries.connectError = '';
    }
    ex.status = 0;
    ex.bodyQueue = this.#body === undefined ? undefined : this.#body.slice();
    // Unref'd, as the fault layer's delay: the client's connection keeps the process alive
    // while the request matters; a backoff whose request ended must not hold a stopping proxy.
    setTimeout(() => {
      if (!ex.finished) runGuarded(ex, () => this.#next(ex));
    }, delay).unref();
    return true;
  }
}

/**
 * Whether the endpoint that just failed has another to replace it: in its backend, or
 * in the backend it fails over to (the replay picks its backend anew, so this is the
 * likely place, not a promise). The default replay goes nowhere else: a lone instance
 * that reset is left to report its reset.
 */
function elsewhere(ex: Exchange): boolean {
  const b = ex.backend;
  const e = ex.endpoint;
  if (b === undefined || e === undefined) return false;
  const tried = new Set(ex.tries?.tried ?? []).add(e.id);
  return !b.balancer.exhausted(tried) || (b.failover !== undefined && !b.failover.balancer.exhausted(tried));
}

/**
 * The default reset replay of one retry layer, shared by its exchanges: a safe body-less
 * request is the hot path (every GET), and its state is only needed once a reset
 * happens; then a {@link RetryState} is made and takes the exchange's `retry`, so one
 * replay at most is made.
 */
class ResetReplay implements Replayer {
  readonly #next: Handler<Routed>;
  readonly #observer: RetryObserver;
  constructor(next: Handler<Routed>, observer: RetryObserver) {
    this.#next = next;
    this.#observer = observer;
  }
  settle(): void {}
  retriesStatus(): boolean {
    return false;
  }
  again(ex: Routed, reason: RetryReason): boolean {
    if (reason !== 'reset') return false;
    const state = new RetryState(RESET_REPLAY, ex.upstream.budget, this.#next, this.#observer, true);
    ex.retry = state;
    return state.again(ex, reason);
  }
}

/** The reason to retry a failed attempt's outcome for, or undefined when it is not one a retry may take. */
function reasonOf(o: Outcome): RetryReason | undefined {
  switch (o.kind) {
    case 'head':
      // A trailers-only gRPC answer is judged by its grpc-status, as the HTTP status it stands for.
      return o.grpcStatus === '' ? o.status : (httpStatusOfGrpc(Number(o.grpcStatus)) ?? o.status);
    case 'reset':
      return 'reset';
    case 'timeout':
      return o.request === true ? undefined : 'timeout';
    default:
      return undefined;
  }
}

/**
 * The retry layer: arms a {@link RetryState} on exchanges of a rule with a retry
 * policy that may be replayed, and the default reset replay on safe body-less requests
 * of rules without one. On the way back it takes the failed attempts it may retry (a
 * listed status, a reset, an attempt timeout) before they reach the client. It wraps
 * split → balance → codec, so each retry picks its backend and endpoint anew.
 */
export function retry(observer: RetryObserver): Layer<Routed> {
  return (next) => {
    const resetReplay = new ResetReplay(next, observer);
    return {
      request(ex) {
        const budget = ex.upstream.budget;
        // Every request earns budget, whether or not it can be retried.
        budget.deposit();
        const policy = ex.route.retry;
        if (policy === undefined) {
          if (ex.bodyless && ex.requestBodyDone && sendableElsewhere(ex.req.method, true)) ex.retry = resetReplay;
          return next(ex);
        }
        if (!policy.nonIdempotent && !IDEMPOTENT.has(ex.req.method)) return next(ex);
        if (ex.req.contentLength > policy.maxBodyBytes) return next(ex);
        const state = new RetryState(policy, budget, next, observer);
        // Body bytes that came with the head (or arrived during a fault delay) are queued already.
        if (ex.bodyQueue !== undefined) for (const c of ex.bodyQueue) state.record(c);
        ex.retry = state;
        ex.recorder = state;
        next(ex);
      },
      back(ex, o, outer) {
        const r = ex.retry;
        if (r === undefined) return outer(ex, o);
        // The attempt a held retry was for is over, however it ended.
        r.settle();
        if (o.kind === 'end') return outer(ex, o);
        const reason = reasonOf(o);
        if (reason === undefined || (typeof reason === 'number' && !r.retriesStatus(reason))) return outer(ex, o);
        if (r.again(ex, reason)) return false;
        return outer(ex, o);
      },
    };
  };
}
