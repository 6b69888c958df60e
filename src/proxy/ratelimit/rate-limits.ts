// The rate limits a sidecar holds for its own service, compiled once per snapshot from
// `Snapshot.rateLimits`: which limits cover a request (all of them, or those on the rule
// its route table picks), each limit's buckets (one, or one per key in a bounded table),
// and the decision for one request. A limit whose definition did not change keeps its
// buckets (and, for a global limit, its quota) across snapshots, so a new snapshot
// neither refills nor empties anyone's bucket.
//
// A request is admitted when every limit covering it has a token; then each gives one.
// A refusal takes nothing, so a request refused by one limit does not spend another's.
import type { RateLimitSnapshot, RateLimitsSnapshot } from '../../api/protocol.js';
import type { Exchange } from '../stack/exchange.js';
import { compileRouteTable, matchRoute, type RouteTable } from '../routing/router.js';
import { KeyTable } from './key-table.js';
import { TokenBucket } from './token-bucket.js';
import { limitItem, policyItem } from './headers.js';
import { principalOf } from '../authz/engine.js';
import { UNKNOWN_SOURCE } from '../identity.js';

/** Header values longer than this are keyed by a hash of the value, so a key holds bounded memory. */
const MAX_KEY_CHARS = 128;

/** One limit's state: its buckets, and what the control plane and metrics read of it. */
export class LimitState {
  /** The limit as the snapshot in force says it (a kept state takes the new one's: routes and headers may change). */
  spec: RateLimitSnapshot;
  /** What decides whether `spec` can keep this state: the fields that shape its buckets. */
  readonly signature: string;
  /** `"name";q=..;w=..` for RateLimit-Policy. */
  readonly policyItem: string;
  /** The one bucket of an unkeyed limit. */
  readonly bucket: TokenBucket | undefined;
  /** The buckets of a keyed limit. */
  readonly table: KeyTable | undefined;
  /** Lower-case header name of a header-keyed limit; '' otherwise. */
  readonly header: string;
  readonly bySource: boolean;
  /** Requests that reached a global limit since the last demand report (taken or refused). */
  offered = 0;
  /** A global limit: the quota in force (requests per second), or undefined before the first. */
  quotaPerSecond: number | undefined;

  constructor(spec: RateLimitSnapshot, now: number) {
    this.spec = spec;
    this.signature = signatureOf(spec);
    this.policyItem = policyItem(spec.name, spec.requests, spec.intervalMs);
    const rate = spec.requests / spec.intervalMs;
    const key = spec.key;
    this.header = key !== undefined && 'header' in key ? key.header : '';
    this.bySource = key !== undefined && 'source' in key;
    if (key === undefined) {
      // A global limit starts at the whole rate until its first quota, which the control
      // plane sends right after the snapshot (milliseconds later).
      this.bucket = new TokenBucket(rate, spec.burst, now);
      this.table = undefined;
    } else {
      this.bucket = undefined;
      this.table = new KeyTable(spec.maxKeys ?? 10_000, rate, spec.burst);
    }
  }

  /** Applies this proxy's share of a global limit. */
  setQuota(requestsPerSecond: number, burst: number, now: number): void {
    this.quotaPerSecond = requestsPerSecond;
    this.bucket?.setRate(requestsPerSecond / 1000, Math.max(1, burst), now);
  }

  /** The bucket that decides for `ex`. */
  bucketFor(ex: Exchange, now: number): TokenBucket {
    if (this.bucket !== undefined) return this.bucket;
    // The caller's verified workload (`ex.peer`, its SPIFFE principal, made once per peer
    // object, so once per connection): a service name alone would put two namespaces'
    // `api` in one bucket. Every plaintext caller (PERMISSIVE, DISABLE) shares `unknown`.
    const key = this.bySource ? (ex.peer === undefined ? UNKNOWN_SOURCE : principalOf(ex.peer)) : headerKey(ex.req.lines, this.header);
    return this.table!.bucket(key, now);
  }
}

function signatureOf(s: RateLimitSnapshot): string {
  const key = s.key === undefined ? '' : 'header' in s.key ? `h:${s.key.header}` : 's';
  return `${s.requests}/${s.intervalMs}/${s.burst}/${key}/${s.maxKeys ?? 0}/${s.global === true}`;
}

/**
 * The first value of header `name` (lower case) in the request's lines, trimmed: '' when
 * absent (every request without it shares one bucket, so leaving it out is no way around
 * the limit), and a hash of it when longer than {@link MAX_KEY_CHARS}.
 */
export function headerKey(lines: readonly string[], name: string): string {
  const n = name.length;
  for (const line of lines) {
    if (line.length <= n || line.charCodeAt(n) !== 58 /* : */) continue;
    let same = true;
    for (let i = 0; i < n; i++) {
      let c = line.charCodeAt(i);
      if (c >= 65 && c <= 90) c += 32;
      if (c !== name.charCodeAt(i)) {
        same = false;
        break;
      }
    }
    if (!same) continue;
    let from = n + 1;
    let to = line.length;
    while (from < to && (line.charCodeAt(from) === 32 || line.charCodeAt(from) === 9)) from++;
    while (to > from && (line.charCodeAt(to - 1) === 32 || line.charCodeAt(to - 1) === 9)) to--;
    if (to - from <= MAX_KEY_CHARS) return line.slice(from, to);
    return hashKey(line, from, to);
  }
  return '';
}

/** FNV-1a over the value's UTF-16 units, as `#<hex>` (no value of 128 characters or fewer starts a key with it and is that long). */
function hashKey(s: string, from: number, to: number): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  return `#${(h1 >>> 0).toString(16)}${(h2 >>> 0).toString(16)}-${to - from}`;
}

/** Why a request was refused: the limit, and how long until it would have a token. */
export interface Refusal {
  readonly limit: LimitState;
  readonly waitMs: number;
}

export class RateLimits {
  /** Every limit, in snapshot order. */
  readonly limits: readonly LimitState[];
  /** Limits that cover every request. */
  readonly #all: readonly LimitState[];
  /** Per route entry name: the limits covering it (those on every request included). */
  readonly #byRoute: ReadonlyMap<string, readonly LimitState[]>;
  readonly #table: RouteTable | undefined;
  /** The buckets of the request being decided (decisions are synchronous, so one array serves). */
  readonly #scratch: TokenBucket[] = [];
  /** Any limit adds its headers to allowed responses. */
  readonly headersOnAllowed: boolean;

  /** `previous`: the rate limits in force, whose unchanged limits keep their buckets. */
  constructor(snap: RateLimitsSnapshot, previous: RateLimits | undefined, now: number) {
    const kept = new Map<string, LimitState>();
    for (const l of previous?.limits ?? []) kept.set(l.spec.id, l);
    const limits: LimitState[] = [];
    for (const spec of snap.limits) {
      checkLimit(spec);
      const old = kept.get(spec.id);
      if (old !== undefined && old.signature === signatureOf(spec)) {
        old.spec = spec;
        limits.push(old);
      } else limits.push(new LimitState(spec, now));
    }
    this.limits = limits;
    this.#all = limits.filter((l) => l.spec.routes === undefined);
    const byRoute = new Map<string, LimitState[]>();
    for (const l of limits) {
      for (const r of l.spec.routes ?? []) {
        let list = byRoute.get(r);
        if (list === undefined) byRoute.set(r, (list = [...this.#all]));
        list.push(l);
      }
    }
    this.#byRoute = byRoute;
    this.#table = byRoute.size > 0 && Array.isArray(snap.routes) ? compileRouteTable(snap.routes) : undefined;
    this.headersOnAllowed = limits.some((l) => l.spec.responseHeaders === true);
  }

  /** The limits covering `ex`. */
  limitsFor(ex: Exchange): readonly LimitState[] {
    const table = this.#table;
    if (table === undefined) return this.#all;
    const route = matchRoute(table, ex.req);
    return route === undefined ? this.#all : (this.#byRoute.get(route.name) ?? this.#all);
  }

  /**
   * Decides one request at clock time `now`: undefined when admitted (a token taken from
   * every limit covering it), else the refusing limit that frees up last.
   */
  admit(ex: Exchange, limits: readonly LimitState[], now: number): Refusal | undefined {
    const buckets = this.#scratch;
    let refusal: Refusal | undefined;
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i]!;
      if (l.spec.global === true) l.offered++;
      const b = l.bucketFor(ex, now);
      b.refill(now);
      buckets[i] = b;
      if (b.tokens < 1) {
        const waitMs = b.msUntil(1);
        if (refusal === undefined || waitMs > refusal.waitMs) refusal = { limit: l, waitMs };
      }
    }
    if (refusal === undefined) for (let i = 0; i < limits.length; i++) buckets[i]!.tokens -= 1;
    return refusal;
  }

  /**
   * The RateLimit-Policy and RateLimit lines (CRLF-terminated) for `limits` after a
   * decision; `onlyConfigured` keeps the limits whose policy asks for headers on allowed
   * responses. Reads the buckets as `admit` left them (`#scratch`).
   */
  headerLines(limits: readonly LimitState[], onlyConfigured: boolean): string {
    let policy = '';
    let state = '';
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i]!;
      if (onlyConfigured && l.spec.responseHeaders !== true) continue;
      const b = this.#scratch[i]!;
      const seconds = b.tokens < 1 ? b.msUntil(1) / 1000 : b.msUntil(b.capacity) / 1000;
      policy += `${policy === '' ? '' : ', '}${l.policyItem}`;
      state += `${state === '' ? '' : ', '}${limitItem(l.spec.name, b.tokens, Number.isFinite(seconds) ? seconds : 0)}`;
    }
    return policy === '' ? '' : `ratelimit-policy: ${policy}\r\nratelimit: ${state}\r\n`;
  }

  /** The global limits, for the demand report and quotas. */
  globals(): LimitState[] {
    return this.limits.filter((l) => l.spec.global === true);
  }
}

/** Refuses (→ NACK) a limit the proxy can't hold. */
function checkLimit(s: RateLimitSnapshot): void {
  const ok =
    typeof s.id === 'string' &&
    typeof s.name === 'string' &&
    typeof s.policy === 'string' &&
    Number.isFinite(s.requests) &&
    s.requests > 0 &&
    Number.isFinite(s.intervalMs) &&
    s.intervalMs > 0 &&
    Number.isFinite(s.burst) &&
    s.burst >= 1 &&
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s.name);
  if (!ok) throw new Error(`rate limit ${JSON.stringify(String(s.id)).slice(0, 200)} is malformed`);
}
