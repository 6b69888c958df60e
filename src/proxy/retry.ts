// Retries of an HTTPRoute rule (Gateway API GEP-1731), with the defaults that can't
// make an outage worse:
// - only idempotent methods are replayed unless a RetryPolicy says otherwise (a POST
//   that reached the server may have done its work);
// - a body is kept for a replay only up to maxBodyBytes; a bigger one streams through
//   untouched and the request is not retried;
// - every retry takes from the destination's budget (retry-budget.ts); a spent budget
//   lets the failure through instead;
// - a failed attempt's response never reaches the client when a retry follows: the
//   upstream connection hands it to us at the response head, before writing a byte.
// A refused connection (nothing sent) is not ours: the balance layer tries another
// endpoint for it (ex.retryConnect), for every method.
//
// Without a retry policy, one replay is still made, of a request that is safe to send
// twice by any reading: a safe method (GET, HEAD, OPTIONS, TRACE) with no body, reset
// before any response byte reached the client, sent to another endpoint, within the
// destination's budget. That is what a whole instance lost (app and sidecar together)
// costs otherwise: every GET in flight on it answered 502.
import type { RetryConfig } from '../api/protocol.js';
import type { Exchange, Handler, Layer } from './exchange.js';
import type { RetryBudget } from './retry-budget.js';

/** Methods that can be sent twice with the effect of once (RFC 9110 9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * Methods that are safe (RFC 9110 9.2.1): read-only by definition, so a copy that
 * reached a dying server did nothing a second copy could repeat. PUT and DELETE are
 * idempotent by the RFC but are left out of what is replayed without being asked, as
 * Go's http.Transport leaves them out of its own replays (`isReplayable`): apps often
 * give them effects a second copy shows (a DELETE answered 404 the second time, an
 * audit entry, a counter), and Envoy and Linkerd replay nothing without a policy at
 * all. A route that knows its PUTs and DELETEs are idempotent says so with `retry`.
 */
export const SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * A request that may be sent elsewhere without a retry policy when what it was sent to
 * died before answering: the inbound sidecar answers `app-unavailable` for it when its
 * app resets, and the caller's sidecar replays it on another endpoint when the peer
 * sidecar itself resets (see {@link retry}).
 */
export function sendableElsewhere(method: string, bodyless: boolean): boolean {
  return bodyless && SAFE.has(method);
}

/** No body: none announced, and (HTTP/2, where a body needs no length) none to come. */
export function bodylessRequest(ex: Exchange): boolean {
  return ex.requestBodyDone && ex.req.contentLength <= 0 && !ex.req.chunked;
}

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

/** What the codecs and the exchange ask of the replay armed on an exchange (`ex.retry`). */
export interface Replayer {
  /** Keeps a request body chunk for a replay. */
  record(chunk: Buffer): void;
  /** Whether a response with this status is one to retry. */
  retriesStatus(status: number): boolean;
  /** Sends the exchange again if it may be; false when not (the caller reports the failure). */
  again(ex: Exchange, reason: RetryReason): boolean;
}

/** The replay state of one exchange; present while it may still be sent again. */
export class RetryState implements Replayer {
  readonly #policy: RetryConfig;
  readonly #budget: RetryBudget;
  readonly #next: Handler;
  readonly #observer: RetryObserver;
  #left: number;
  #body: Buffer[] | undefined;
  #bodyBytes = 0;
  #replayable = true;
  /** The default replay ({@link RESET_REPLAY}): resets only, and only to another endpoint. */
  readonly #resetsElsewhere: boolean;

  constructor(policy: RetryConfig, budget: RetryBudget, next: Handler, observer: RetryObserver, resetsElsewhere = false) {
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

  /**
   * Decides on a retry after a failed attempt whose response has not reached the
   * client. True: a retry is scheduled, and the caller must drop the attempt (its
   * response and its connection) without touching the client. False: carry on as if
   * there were no retry policy.
   */
  again(ex: Exchange, reason: RetryReason): boolean {
    if (this.#left <= 0 || !this.#replayable || !ex.requestBodyDone || ex.responseStarted || ex.finished) return false;
    if (ex.client.socket.destroyed) return false;
    if (this.#resetsElsewhere && (reason !== 'reset' || !elsewhere(ex))) return false;
    const delay = backoffDelay(this.#policy.backoffMs, this.#policy.attempts - this.#left);
    const destination = ex.service;
    const route = ex.route?.name ?? '';
    if (ex.deadline !== 0 && performance.now() + delay >= ex.deadline) {
      // No retry fits before the request's deadline: the request ends at it, as
      // timeouts.request promises, without spending budget on an attempt never sent.
      this.#left = 0;
      this.#wait(ex, Math.max(0, ex.deadline - performance.now()), route, true);
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
    if (breaker !== undefined) ex.heldRetry = breaker;
    this.#left--;
    this.#observer.retried(destination, route, String(reason));
    ex.attempts++;
    // A fresh connect-attempt count, avoiding the endpoint that just failed when the
    // backend has another (the balancer never picks an excluded endpoint).
    ex.tried = ex.endpoint !== undefined && ex.backend !== undefined && (ex.backend.balancer.endpoints.length > 1 || this.#resetsElsewhere) ? new Set([ex.endpoint.id]) : undefined;
    ex.connectError = '';
    ex.status = 0;
    ex.upstreamConn = undefined;
    ex.bodyQueue = this.#body === undefined ? undefined : this.#body.slice();
    this.#wait(ex, delay, route, false);
    return true;
  }

  /**
   * Sends the next attempt after `ms`, or, when `expires` (decided up front: timers
   * measure from the event loop's cached time and may fire early), ends the request
   * at its deadline.
   */
  #wait(ex: Exchange, ms: number, route: string, expires: boolean): void {
    setTimeout(() => {
      if (ex.finished) return;
      if (expires || (ex.deadline !== 0 && performance.now() >= ex.deadline)) {
        return ex.fail('TRELLIS_E_REQUEST_TIMEOUT', { route, ms: Math.round(ex.deadline - ex.startedAt) });
      }
      this.#next(ex);
    }, ms);
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
  const tried = new Set(ex.tried ?? []).add(e.id);
  return !b.balancer.exhausted(tried) || (b.failover !== undefined && !b.failover.balancer.exhausted(tried));
}

/**
 * The retry layer: arms a {@link RetryState} on exchanges of a rule with a retry
 * policy that may be replayed, and the default reset replay on safe body-less requests
 * of rules without one. It wraps split → balance → forward, so each retry picks its
 * backend and endpoint anew.
 */
/**
 * The default reset replay of one retry layer, shared by its exchanges: a safe body-less
 * request is the hot path (every GET), and its state is only needed once a reset
 * happens; then a {@link RetryState} is made and takes the exchange's `retry`, so one
 * replay at most is made.
 */
class ResetReplay implements Replayer {
  readonly #next: Handler;
  readonly #observer: RetryObserver;
  constructor(next: Handler, observer: RetryObserver) {
    this.#next = next;
    this.#observer = observer;
  }
  record(): void {}
  retriesStatus(): boolean {
    return false;
  }
  again(ex: Exchange, reason: RetryReason): boolean {
    if (reason !== 'reset' || ex.upstream === undefined) return false;
    const state = new RetryState(RESET_REPLAY, ex.upstream.budget, this.#next, this.#observer, true);
    ex.retry = state;
    return state.again(ex, reason);
  }
}

export function retry(observer: RetryObserver): Layer {
  return (next) => {
    const resetReplay = new ResetReplay(next, observer);
    return (ex) => {
      const budget = ex.upstream!.budget;
      // Every request earns budget, whether or not it can be retried.
      budget.deposit();
      const policy = ex.route!.retry;
      if (policy === undefined) {
        if (sendableElsewhere(ex.req.method, bodylessRequest(ex))) ex.retry = resetReplay;
        return next(ex);
      }
      if (!policy.nonIdempotent && !IDEMPOTENT.has(ex.req.method)) return next(ex);
      if (ex.req.contentLength > policy.maxBodyBytes) return next(ex);
      const state = new RetryState(policy, budget, next, observer);
      // Body bytes that came with the head (or arrived during a fault delay) are queued already.
      if (ex.bodyQueue !== undefined) for (const c of ex.bodyQueue) state.record(c);
      ex.retry = state;
      next(ex);
    };
  };
}
