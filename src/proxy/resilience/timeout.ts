// Timeouts: the route's (Gateway API GEP-1742 timeouts.request and backendRequest) and
// the connection's own wait for a response head. The timeouts layer stamps each
// exchange (`deadline` for timeouts.request: the whole exchange, retries and fault
// delays included, measured from the request head's arrival; `attemptTimeoutMs` for
// timeouts.backendRequest: each attempt's wait for its head) and watches it until its
// response head is delivered or it ends. One sweep timer per proxy enforces every
// watched exchange (`Deadlines`), so no request arms a timer of its own; the sweep
// runs often enough for the shortest timeout in the snapshot (sweepIntervalMs).
//
// An attempt that times out is given up (its link cancelled) and reported as a
// `timeout` outcome from the innermost layer it reached, so the balancer counts it and
// the retry layer may try again; a request past its deadline is reported the same way
// with `request` set, which no layer retries, and answered 504 request-timeout. Once a
// response has started, it streams on: the timeouts bound the wait for its head.
import type { Back, Exchange } from '../stack/exchange.js';
import type { Outcome } from '../stack/outcome.js';
import type { CompiledUpstream } from '../routing/router.js';
import type { Layer } from '../stack/layer.js';
import type { Routed } from '../stack/decisions.js';

/** The default sweep period, and the slowest (a timeout is enforced within a quarter of itself). */
const SLOWEST_SWEEP_MS = 250;

/**
 * The exchanges a proxy watches for timeouts, and the one timer that enforces them.
 * Watched exchanges sit in slots of an array that only grows (to the most ever in
 * flight at once), each exchange knowing its slot: watching and letting go are two
 * stores, with no hash table to grow, shrink and rehash under every request. (A Set
 * here cost the proxy two and a half times the garbage collection of the build before
 * it at max rate: bench A/B, CPU profiles.)
 */
export class Deadlines {
  readonly #slots: (Exchange | undefined)[] = [];
  /** Free slots, most recently freed last. */
  readonly #free: number[] = [];
  #size = 0;
  #timer: NodeJS.Timeout | undefined;
  #periodMs = SLOWEST_SWEEP_MS;

  /** Sweeps every `ms` (routes with short timeouts need a finer sweep; see sweepIntervalMs). */
  setSweepInterval(ms: number): void {
    if (ms === this.#periodMs) return;
    this.#periodMs = ms;
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#arm();
    }
  }

  watch(ex: Exchange): void {
    if (ex.watchSlot !== -1) return;
    const i = this.#free.pop() ?? this.#slots.length;
    this.#slots[i] = ex;
    ex.watchSlot = i;
    this.#size++;
    if (this.#timer === undefined) this.#arm();
  }

  unwatch(ex: Exchange): void {
    const i = ex.watchSlot;
    if (i === -1 || this.#slots[i] !== ex) return;
    this.#slots[i] = undefined;
    ex.watchSlot = -1;
    this.#free.push(i);
    this.#size--;
  }

  /** Exchanges watched now. */
  get size(): number {
    return this.#size;
  }

  #arm(): void {
    this.#timer = setInterval(() => this.sweep(performance.now()), this.#periodMs);
    this.#timer.unref();
  }

  /** Ends what is over its time at `now`. */
  sweep(now: number): void {
    if (this.#size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const ex = slots[i];
      if (ex === undefined) continue;
      if (ex.finished || ex.responseStarted) {
        this.unwatch(ex);
        continue;
      }
      if (ex.deadline !== 0 && now >= ex.deadline) {
        this.unwatch(ex);
        expire(ex, {
          kind: 'timeout',
          code: 'TRELLIS_E_REQUEST_TIMEOUT',
          params: { route: ex.route?.name ?? '', ms: Math.round(ex.deadline - ex.startedAt) },
          request: true,
        });
        continue;
      }
      const link = ex.link;
      if (link === undefined || link.sentAt === 0) continue;
      const limit = ex.attemptTimeoutMs || link.headTimeoutMs;
      if (limit > 0 && now - link.sentAt > limit) {
        // Still watched: a retry's next attempt has the same limits.
        const address = ex.endpoint === undefined ? '' : `${ex.endpoint.host}:${ex.endpoint.port}`;
        expire(ex, { kind: 'timeout', code: 'TRELLIS_E_TIMEOUT', params: { address, ms: limit }, request: false });
      }
    }
  }
}

/** Gives up the attempt in flight (if any) and reports the timeout through the layers the exchange passed. */
function expire(
  ex: Exchange,
  o: { kind: 'timeout'; code: 'TRELLIS_E_TIMEOUT' | 'TRELLIS_E_REQUEST_TIMEOUT'; params: Record<string, unknown>; request: boolean },
): void {
  const link = ex.link;
  ex.link = undefined;
  link?.cancel();
  try {
    ex.report({ ...o, sentAt: link?.sentAt ?? 0 });
  } catch (err) {
    // An exception in the layers' handling ends this exchange's client, never the sweep.
    if (ex.client.failed !== undefined) ex.client.failed(err);
    else ex.client.socket.destroy();
  }
}

/**
 * The timeouts layer of an outbound stack: stamps the route's timeouts and watches the
 * exchange until its response head is delivered or it ends.
 */
export function timeouts(deadlines: Deadlines): Layer<Routed> {
  return (next) => ({
    request(ex) {
      const t = ex.route.timeouts;
      if (t !== undefined) {
        if (t.requestMs !== undefined) ex.deadline = ex.startedAt + t.requestMs;
        if (t.backendRequestMs !== undefined) ex.attemptTimeoutMs = t.backendRequestMs;
      }
      deadlines.watch(ex);
      next(ex);
    },
    back: unwatchAtHead(deadlines),
  });
}

/** The inbound stack's: no route, so only the connection's own wait for a response head. */
export function headTimeout<E extends Exchange>(deadlines: Deadlines): Layer<E> {
  return (next) => ({
    request(ex) {
      deadlines.watch(ex);
      next(ex);
    },
    back: unwatchAtHead(deadlines),
  });
}

function unwatchAtHead(deadlines: Deadlines): (ex: Exchange, o: Outcome, outer: Back) => boolean {
  return (ex, o, outer) => {
    const deliver = outer(ex, o);
    // A head on its way to the client, or the end: nothing left to time.
    if (o.kind === 'end' || (o.kind === 'head' && deliver)) deadlines.unwatch(ex);
    return deliver;
  };
}

/** The slowest sweep that still fires a timeout within a quarter of its length (10-250 ms). */
export function sweepIntervalMs(upstreams: Iterable<CompiledUpstream>, slowest = SLOWEST_SWEEP_MS): number {
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
