// The balancer contract: given the endpoints of one backend, pick one for a request.
// The answer is a tagged union (as grpc-js's PickResultType) so callers handle every
// outcome: a pick, or a failure with the code to answer with. (The bounded wait when a
// backend has no endpoint at all is the balance layer's, wait-queue.ts, not a PickResult.)
//
// Every balancer also hears how its picks went: `started` when a request goes to an
// endpoint, `finished` with its round-trip time and whether it failed, and
// `connectFailed` when the endpoint refused a connection. Load-aware balancers use
// them; the others ignore all but connect failures.
import type { Endpoint } from '../../api/protocol.js';
import type { ErrorCode } from '../../errors.js';

export type PickResult = { readonly type: 'pick'; readonly endpoint: Endpoint } | { readonly type: 'fail'; readonly code: ErrorCode };

export interface Balancer {
  readonly endpoints: readonly Endpoint[];
  /**
   * Picks an endpoint, skipping those in `exclude` (ids already tried by this request)
   * when it can. `hashKey` is the request's affinity key (a header, a cookie, the
   * source) for the hashing balancers; the others ignore it.
   */
  pick(exclude?: ReadonlySet<string>, hashKey?: string): PickResult;
  /** A request was sent to `endpoint`: it is pending until `finished`. */
  started(endpoint: Endpoint): void;
  /**
   * The request ended after `rttMs`; `failed` for a 5xx, a 429 or no answer. `now` is
   * the caller's performance.now() when it has one (one clock read per attempt).
   */
  finished(endpoint: Endpoint, rttMs: number, failed: boolean, now?: number): void;
  /** Connecting to an endpoint failed, so it is avoided for a short while. */
  connectFailed(endpoint: Endpoint, now: number): void;
  /**
   * True when no endpoint can take a request (each ejected, recently refusing, weighted 0
   * or in `exclude`): the caller fails over to another backend rather than panic here.
   */
  exhausted(exclude?: ReadonlySet<string>): boolean;
}

/** What a balancer asks the destination's outlier detector. */
export interface EjectionView {
  /** Endpoints ejected now (or whose ejection ran out but was not yet noticed): 0 is the fast path. */
  readonly ejectedCount: number;
  isEjected(id: string): boolean;
}

/** Envoy's healthy_panic_threshold default, percent. */
export const DEFAULT_PANIC_THRESHOLD = 50;

/** How long an endpoint that refused a connection is skipped, in ms. */
export const CONNECT_FAILURE_BACKOFF_MS = 2000;

const endpointKeys = new WeakMap<{ host: string; port: number }, string>();
const connectionKeys = new WeakMap<{ host: string; port: number }, string>();

/**
 * `host:port` of an endpoint: the key of its backoff and logs. Built once per endpoint
 * object (the snapshot's, or the app's), not on every request.
 */
export function endpointKey(e: { host: string; port: number }): string {
  let k = endpointKeys.get(e);
  if (k === undefined) endpointKeys.set(e, (k = `${e.host}:${e.port}`));
  return k;
}

/**
 * The key of an endpoint's connections (pools, how they are secured, TLS sessions): its
 * `host:port`, and for an ExternalService's endpoint (Endpoint.external) that service too,
 * as Envoy pools per cluster: two ExternalServices may share one address (two names on one
 * static IP, or DNS answering both with one) and still differ in SNI and CA bundle.
 */
export function connectionKey(e: { host: string; port: number; external?: string }): string {
  let k = connectionKeys.get(e);
  if (k === undefined) connectionKeys.set(e, (k = typeof e.external === 'string' ? `${endpointKey(e)} (${e.external})` : endpointKey(e)));
  return k;
}

/** An endpoint's weight (default 1; 0 takes no new requests while others can). */
export function weightOf(e: Endpoint): number {
  const w = e.weight;
  return w === undefined ? 1 : Math.max(w, 0);
}

/**
 * The part every balancer shares: which endpoints a request may go to. An endpoint is
 * avoided for {@link CONNECT_FAILURE_BACKOFF_MS} after it refused a connection (the
 * control plane's health checks take seconds to notice a dead instance; the data
 * plane notices at once), and a request does not go back to one it already tried.
 * When nothing else is left, a recently refused endpoint beats failing.
 */
export abstract class BaseBalancer implements Balancer {
  readonly endpoints: readonly Endpoint[];
  readonly #downUntil = new Map<string, number>();
  #outliers: EjectionView | undefined;
  #panicThreshold = DEFAULT_PANIC_THRESHOLD;
  /** Decided once per pick: skip ejected endpoints (some are, and the backend is not in panic). */
  #skipEjected = false;

  constructor(endpoints: readonly Endpoint[]) {
    this.endpoints = endpoints;
  }

  abstract pick(exclude?: ReadonlySet<string>, hashKey?: string): PickResult;

  started(_endpoint: Endpoint): void {}

  finished(_endpoint: Endpoint, _rttMs: number, _failed: boolean, _now?: number): void {}

  connectFailed(endpoint: Endpoint, now: number): void {
    this.#downUntil.set(endpointKey(endpoint), now + CONNECT_FAILURE_BACKOFF_MS);
  }

  /**
   * Passive health: ejected endpoints are skipped, unless fewer than `panicThreshold`
   * percent of the backend's endpoints are left, when every endpoint is balanced over
   * (Envoy's panic mode: better to spread load over sick hosts than crush the few left).
   */
  setHealth(outliers: EjectionView | undefined, panicThreshold: number): void {
    this.#outliers = outliers;
    this.#panicThreshold = panicThreshold;
  }

  exhausted(exclude?: ReadonlySet<string>): boolean {
    const o = this.#outliers;
    // The common case, nothing tried, down or ejected, costs three tests.
    if (exclude === undefined && this.#downUntil.size === 0 && (o === undefined || o.ejectedCount === 0)) return this.endpoints.length === 0;
    const now = this.#downUntil.size > 0 ? Date.now() : 0;
    for (const e of this.endpoints) {
      if (weightOf(e) === 0 || exclude?.has(e.id)) continue;
      if (now !== 0 && this.#isDown(e, now)) continue;
      if (o !== undefined && o.ejectedCount > 0 && o.isEjected(e.id)) continue;
      return false;
    }
    return true;
  }

  /**
   * Called once at the start of every pick: the time to judge "recently down" at, or 0
   * when no endpoint is down (the common case: no clock read); also decides whether this
   * pick skips ejected endpoints (with none ejected, one property read).
   */
  protected downClock(): number {
    const o = this.#outliers;
    this.#skipEjected = o !== undefined && o.ejectedCount > 0 && !this.#panicking(o);
    return this.#downUntil.size > 0 ? Date.now() : 0;
  }

  /** Whether `e` may take this request: not tried by it, not recently refusing, not ejected, not weighted 0. */
  protected usable(e: Endpoint, exclude: ReadonlySet<string> | undefined, now: number): boolean {
    if (exclude?.has(e.id)) return false;
    if (now !== 0 && this.#isDown(e, now)) return false;
    if (this.#skipEjected && this.#outliers!.isEjected(e.id)) return false;
    return weightOf(e) > 0;
  }

  #panicking(o: EjectionView): boolean {
    let total = 0;
    let healthy = 0;
    for (const e of this.endpoints) {
      if (weightOf(e) === 0) continue;
      total++;
      if (!o.isEjected(e.id)) healthy++;
    }
    return healthy * 100 < this.#panicThreshold * total;
  }

  /**
   * A usable endpoint drawn in proportion to its weight (the random balancer, and the
   * hashing balancers for a request without a key); `now` is {@link downClock}'s.
   */
  protected pickWeighted(exclude: ReadonlySet<string> | undefined, now: number, random: () => number): PickResult {
    let total = 0;
    for (const e of this.endpoints) if (this.usable(e, exclude, now)) total += weightOf(e);
    if (total === 0) return this.fallback(exclude);
    let x = random() * total;
    let last: Endpoint | undefined;
    for (const e of this.endpoints) {
      if (!this.usable(e, exclude, now)) continue;
      last = e;
      x -= weightOf(e);
      if (x < 0) return picked(e);
    }
    return picked(last!);
  }

  /** When no endpoint is usable: the first not yet tried by this request, else a failure. */
  protected fallback(exclude: ReadonlySet<string> | undefined): PickResult {
    for (const e of this.endpoints) if (exclude === undefined || !exclude.has(e.id)) return picked(e);
    return NO_ENDPOINTS;
  }

  #isDown(e: Endpoint, now: number): boolean {
    if (this.#downUntil.size === 0) return false;
    const key = endpointKey(e);
    const until = this.#downUntil.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#downUntil.delete(key);
    return false;
  }
}

export const NO_ENDPOINTS: PickResult = { type: 'fail', code: 'TRELLIS_E_NO_ENDPOINTS' };

/**
 * Pending requests per endpoint, for the balancers that weigh load. Keyed by endpoint
 * id; an id that left the endpoint list is simply never read again.
 */
export class PendingCounts {
  readonly #pending = new Map<string, number>();

  of(e: Endpoint): number {
    return this.#pending.get(e.id) ?? 0;
  }

  inc(e: Endpoint): void {
    this.#pending.set(e.id, this.of(e) + 1);
  }

  dec(e: Endpoint): void {
    const n = this.of(e);
    if (n > 0) this.#pending.set(e.id, n - 1);
  }
}

/**
 * Power of two choices: two distinct usable endpoints drawn at random (in proportion to
 * their weights), of which the one `better` prefers. With one usable endpoint, that one.
 */
export function pickTwo(
  b: { readonly endpoints: readonly Endpoint[] },
  isUsable: (e: Endpoint) => boolean,
  better: (x: Endpoint, y: Endpoint) => Endpoint,
  random: () => number,
): Endpoint | undefined {
  const eps = b.endpoints;
  let total = 0;
  let count = 0;
  for (const e of eps) {
    if (!isUsable(e)) continue;
    total += weightOf(e);
    count++;
  }
  if (count === 0) return undefined;
  const first = drawUsable(eps, undefined, total, isUsable, random);
  if (count === 1) return first;
  const second = drawUsable(eps, first, total - weightOf(first), isUsable, random);
  return better(first, second);
}

/** A usable endpoint of `eps` but `skip`, drawn in proportion to its weight (`sum`: theirs); a function of its own, so a pick makes no closure. */
function drawUsable(eps: readonly Endpoint[], skip: Endpoint | undefined, sum: number, isUsable: (e: Endpoint) => boolean, random: () => number): Endpoint {
  let x = random() * sum;
  let last: Endpoint | undefined;
  for (const e of eps) {
    if (e === skip || !isUsable(e)) continue;
    last = e;
    x -= weightOf(e);
    if (x < 0) return e;
  }
  return last!;
}

const pickResults = new WeakMap<Endpoint, PickResult>();

/** `{ type: 'pick', endpoint: e }`, made once per endpoint object (a snapshot's), not per request. */
export function picked(e: Endpoint): PickResult {
  let r = pickResults.get(e);
  if (r === undefined) pickResults.set(e, (r = { type: 'pick', endpoint: e }));
  return r;
}
