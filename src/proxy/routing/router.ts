// Route matching for one upstream service: the control plane sends route entries in
// Gateway API precedence order, so the first entry that matches wins. Compiling a
// snapshot turns them into closures-free records with pre-built regexes and weight
// tables, so matching a request allocates nothing beyond header values and the
// substrings a regular expression is run on.
import {
  DEFAULT_RETRY_BUDGET,
  DEFAULT_UPGRADES,
  type FaultConfig,
  type InvalidBackend,
  type RetryBudgetConfig,
  type RetryConfig,
  type RouteEntry,
  type RouteTimeouts,
  type UpstreamSnapshot,
} from '../../api/protocol.js';
import { RetryBudget } from '../resilience/retry-budget.js';
import type { RequestHead } from '../../http1/http1-parser.js';
import type { Balancer } from '../balancer/balancer.js';
import type { OutlierDetector } from '../resilience/outlier-detector.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import type { WaitQueue } from '../resilience/wait-queue.js';
import { RoundRobinBalancer } from '../balancer/round-robin.js';
import { compileFilters, type CompiledFilters } from '../filters/compile.js';

interface HeaderMatcher {
  readonly name: string;
  /** Index of `name` in the upstream's {@link CompiledUpstream.headerNames}. */
  readonly slot: number;
  readonly exact?: string;
  readonly regex?: RegExp;
}

/** Where RingHash and Maglev read a request's affinity key. */
export type HashOn = { readonly header: string } | { readonly cookie: string } | { readonly source: true };

/** Requests one backend sent to its failover backend, since the sidecar started sending it any. */
export interface FailoverCount {
  readonly backend: string;
  readonly to: string;
  count: number;
}

export interface CompiledBackend {
  readonly name: string;
  readonly balancer: Balancer;
  /** The destination's passive health (one per upstream service); undefined: none. */
  readonly outliers: OutlierDetector | undefined;
  /** Where RingHash and Maglev read a request's affinity key; undefined: no key. */
  readonly hashOn: HashOn | undefined;
  /**
   * Where requests go when no endpoint of this backend can take them: for a version
   * (`<service>-<version>`), the whole service; set anew with every snapshot.
   */
  failover: CompiledBackend | undefined;
  /** Counts the requests sent to `failover` (balancing.ts keeps it across snapshots, for metrics); undefined: not counted. */
  failovers: FailoverCount | undefined;
  /** The destination's circuit breaker (one per upstream service); undefined: no limits. Set anew with every snapshot. */
  breaker: CircuitBreaker | undefined;
  /** Where requests wait while the backend has no endpoint at all (wait-queue.ts); kept per backend name. */
  queue: WaitQueue<CompiledBackend> | undefined;
}

interface QueryMatcher {
  /** `name=` as it appears in a query string. */
  readonly key: string;
  readonly exact?: string;
  readonly regex?: RegExp;
}

export interface CompiledRoute {
  readonly name: string;
  /** Exact host (lower case, no port), or undefined. */
  readonly hostExact: string | undefined;
  /** `.suffix` of a `*.suffix` hostname, or undefined. */
  readonly hostSuffix: string | undefined;
  readonly pathType: 'Exact' | 'PathPrefix' | 'RegularExpression' | undefined;
  readonly pathValue: string;
  readonly pathRegex: RegExp | undefined;
  /** A PathPrefix value without its trailing '/' ('' for '/'), as matching compares it. */
  readonly pathPrefix: string;
  /** The PathPrefix this entry matched on ('/' otherwise), for ReplacePrefixMatch. */
  readonly matchedPrefix: string;
  readonly method: string | undefined;
  readonly headers: readonly HeaderMatcher[];
  readonly query: readonly QueryMatcher[];
  /** The rule's filters; undefined when it has none (the fast path). */
  readonly filters: CompiledFilters | undefined;
  /** Filters per backend (same index as `backends`); undefined when no backendRef has any. */
  readonly backendFilters: readonly (CompiledFilters | undefined)[] | undefined;
  /** Backend names with cumulative weights, for a weighted random pick. */
  readonly backends: readonly string[];
  /**
   * Why a backend is invalid (same index as `backends`), its share answered 500;
   * undefined when every backend is valid (the fast path: one test per request).
   */
  readonly invalid: readonly (InvalidBackend | undefined)[] | undefined;
  readonly cumulative: readonly number[];
  readonly totalWeight: number;
  // Resilience: undefined when the rule has none, so the layers skip it with one test.
  readonly timeouts: RouteTimeouts | undefined;
  readonly retry: RetryConfig | undefined;
  readonly fault: FaultConfig | undefined;
}

export interface CompiledUpstream {
  readonly service: string;
  /** Where the sidecar keeps this upstream's balancers (balancing.ts): the service, or `service:port` for one port of a multi-port service. */
  readonly key: string;
  readonly protocol: 'http' | 'http1' | 'http2' | 'grpc' | 'tcp' | 'detect';
  /**
   * A multi-port service: each of its ports compiled as an upstream of its own (its
   * routes, protocol, and endpoints at that port), by service port; this upstream is then
   * its first port's. Undefined: one port, whatever port a Host names.
   */
  readonly ports: ReadonlyMap<number, CompiledUpstream> | undefined;
  /** The service ports, for the unknown-port error (`80, 8080`); '' for a one-port service. */
  readonly portList: string;
  readonly routes: readonly CompiledRoute[];
  /**
   * What a request addressed to one instance of the service takes instead of its routes
   * (the Gateway API applies a Service's routes to its name, not to its pods' addresses):
   * the whole service as its backend, no filters or policies.
   */
  readonly direct: CompiledRoute;
  readonly backends: ReadonlyMap<string, CompiledBackend>;
  /** The destination's retry budget: its routes' retries and the default reset replay (retry.ts) take from it. */
  readonly budget: RetryBudget;
  /**
   * Every header name the routes match on. A request's values for them are read in one
   * pass over its header lines before the routes are tried, into `headerValues` (reused:
   * matching is synchronous), so 50 rules on one header cost one scan, not 50.
   */
  readonly headerNames: readonly string[];
  readonly headerValues: (string | undefined)[];
  /** The upgrade protocols the service accepts (lower case; upgrade.ts). */
  readonly upgrades: readonly string[];
}

/**
 * Gives the backends of an upstream: a sidecar keeps their balancers and health across
 * snapshots (balancing.ts), under `key` (the service, or `service:port` for one port of a multi-port service).
 */
export type BackendSource = (snap: UpstreamSnapshot, key: string) => Map<string, CompiledBackend>;

/** Gives the budget of a service: a sidecar keeps one per destination across snapshots. */
export type BudgetSource = (service: string, config: RetryBudgetConfig) => RetryBudget;

/** The route used when a service has no HTTPRoute: every request to backend `<service>`. */
function defaultRoute(service: string, fault: FaultConfig | undefined): CompiledRoute {
  return {
    name: `default/${service}`,
    hostExact: undefined,
    hostSuffix: undefined,
    pathType: undefined,
    pathValue: '/',
    pathRegex: undefined,
    pathPrefix: '',
    matchedPrefix: '/',
    method: undefined,
    headers: [],
    query: [],
    filters: undefined,
    backendFilters: undefined,
    backends: [service],
    invalid: undefined,
    cumulative: [1],
    totalWeight: 1,
    timeouts: undefined,
    retry: undefined,
    fault,
  };
}

/** Gateway API regular expressions match the whole value. */
const anchored = (value: string): RegExp => new RegExp(`^(?:${value})$`);

function compileRoute(entry: RouteEntry, serviceFault: FaultConfig | undefined, slotOf: (name: string) => number): CompiledRoute {
  const headers: HeaderMatcher[] = (entry.match.headers ?? []).map((h) => {
    const name = h.name.toLowerCase();
    return h.type === 'RegularExpression' ? { name, slot: slotOf(name), regex: anchored(h.value) } : { name, slot: slotOf(name), exact: h.value };
  });
  // Only the first match of a name counts (Gateway API).
  const seen = new Set<string>();
  const query: QueryMatcher[] = [];
  for (const q of entry.match.queryParams ?? []) {
    if (seen.has(q.name)) continue;
    seen.add(q.name);
    query.push(q.type === 'RegularExpression' ? { key: `${q.name}=`, regex: anchored(q.value) } : { key: `${q.name}=`, exact: q.value });
  }
  const backends: string[] = [];
  const cumulative: number[] = [];
  const backendFilters: (CompiledFilters | undefined)[] = [];
  const invalid: (InvalidBackend | undefined)[] = [];
  let total = 0;
  for (const b of entry.backends) {
    // A weight of 0 is never picked, valid or not.
    if (!(b.weight > 0)) continue;
    total += b.weight;
    backends.push(b.backend);
    cumulative.push(total);
    backendFilters.push(compileFilters(b.filters));
    invalid.push(b.invalid);
  }
  const host = entry.hostname?.toLowerCase();
  const path = entry.match.path;
  return {
    name: entry.name,
    hostExact: host !== undefined && !host.startsWith('*.') ? host : undefined,
    hostSuffix: host?.startsWith('*.') ? host.slice(1) : undefined,
    pathType: path?.type,
    pathValue: path?.value ?? '/',
    pathRegex: path?.type === 'RegularExpression' ? anchored(path.value) : undefined,
    pathPrefix: path?.type === 'PathPrefix' && path.value.endsWith('/') ? path.value.slice(0, -1) : (path?.value ?? ''),
    matchedPrefix: path?.type === 'PathPrefix' ? path.value : '/',
    method: entry.match.method,
    headers,
    query,
    filters: compileFilters(entry.filters),
    backendFilters: backendFilters.some((f) => f !== undefined) ? backendFilters : undefined,
    backends,
    invalid: invalid.some((b) => b !== undefined) ? invalid : undefined,
    cumulative,
    totalWeight: total,
    timeouts: entry.timeouts,
    retry: entry.retry,
    fault: entry.fault ?? serviceFault,
  };
}

/**
 * Builds the matcher and balancers for one upstream. Throws (with a reason the proxy
 * sends back as a NACK) when the snapshot cannot be used, e.g. an invalid regex.
 */
export function compileUpstream(
  snap: UpstreamSnapshot,
  backendsFor: BackendSource = (s) =>
    new Map(
      Object.entries(s.backends).map(([name, b]) => [
        name,
        {
          name,
          balancer: new RoundRobinBalancer(b.endpoints),
          outliers: undefined,
          hashOn: undefined,
          failover: undefined,
          failovers: undefined,
          breaker: undefined,
          queue: undefined,
        },
      ]),
    ),
  budgetFor: BudgetSource = (_, c) => new RetryBudget(c),
): CompiledUpstream {
  const ports = snap.ports;
  if (ports === undefined || ports.length === 0) return compileOne(snap, snap.service, undefined, '', backendsFor, budgetFor);
  // Every port is an upstream of its own, as Envoy and Istio give each service port its own cluster:
  // routes, balancers and outlier detection per port; the retry budget stays the service's.
  const portList = ports.map((p) => p.port).join(', ');
  const byPort = new Map<number, CompiledUpstream>();
  for (const p of ports) {
    const one: UpstreamSnapshot = { ...snap, protocol: p.protocol, routes: p.routes, backends: p.backends };
    delete one.ports;
    byPort.set(p.port, compileOne(one, `${snap.service}:${p.port}`, undefined, portList, backendsFor, budgetFor));
  }
  const first = byPort.get(ports[0]!.port)!;
  return { ...first, ports: byPort };
}

/** The upstream itself and, for a multi-port service, each of its ports. */
export function* eachUpstream(upstreams: Iterable<CompiledUpstream>): Generator<CompiledUpstream> {
  for (const u of upstreams) {
    if (u.ports === undefined) yield u;
    else yield* u.ports.values();
  }
}

function compileOne(
  snap: UpstreamSnapshot,
  key: string,
  ports: ReadonlyMap<number, CompiledUpstream> | undefined,
  portList: string,
  backendsFor: BackendSource,
  budgetFor: BudgetSource,
): CompiledUpstream {
  const headerNames: string[] = [];
  const slotOf = (name: string): number => {
    const i = headerNames.indexOf(name);
    return i !== -1 ? i : headerNames.push(name) - 1;
  };
  // A Gateway's port takes only what its routes name (explicitRoutes): no default route to a backend of its own name.
  const routes =
    snap.routes.length > 0 || snap.explicitRoutes === true
      ? snap.routes.map((r) => compileRoute(r, snap.fault, slotOf))
      : [defaultRoute(snap.service, snap.fault)];
  const backends = backendsFor(snap, key);
  const budget = budgetFor(snap.service, snap.retryBudget ?? DEFAULT_RETRY_BUDGET);
  return {
    service: snap.service,
    key,
    protocol: snap.protocol,
    ports,
    portList,
    routes,
    direct: { ...defaultRoute(snap.service, undefined), name: `direct/${snap.service}` },
    backends,
    budget,
    headerNames,
    headerValues: headerNames.map(() => undefined),
    upgrades: upgradeList(snap.upgrades),
  };
}

/** A snapshot's upgrade protocols in lower case; absent: the default (WebSocket). */
export function upgradeList(upgrades: readonly string[] | undefined): readonly string[] {
  return upgrades === undefined ? DEFAULT_UPGRADES : upgrades.map((p) => p.toLowerCase());
}

/** PathPrefix matches whole path elements: `/api` matches `/api` and `/api/x`, not `/apix`. */
function prefixMatches(path: string, p: string): boolean {
  if (p === '') return true;
  if (!path.startsWith(p)) return false;
  return path.length === p.length || path.charCodeAt(p.length) === 47;
}

/** `s[from, from + lower.length)` equals `lower` ignoring ASCII case. */
function equalsLower(s: string, from: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = s.charCodeAt(from + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The Host header against the entry's hostname, ignoring a port and a trailing dot.
 * `*.example.com` matches any name ending in `.example.com` (one or more labels), not
 * `example.com` itself (Gateway API).
 */
function hostMatches(route: CompiledRoute, host: string): boolean {
  let end = host.length;
  for (let i = end - 1; i >= 0; i--) {
    const c = host.charCodeAt(i);
    if (c === 58) {
      end = i;
      break;
    }
    if (c < 48 || c > 57) break;
  }
  if (end > 0 && host.charCodeAt(end - 1) === 46) end--;
  const exact = route.hostExact;
  if (exact !== undefined) return end === exact.length && equalsLower(host, 0, exact);
  const suffix = route.hostSuffix!;
  return end > suffix.length && equalsLower(host, end - suffix.length, suffix);
}

/** Start of the first value of `key` (`name=`) in the query of `target`, or -1; `from` is just past `?`. */
function queryValueStart(target: string, from: number, key: string): number {
  let i = from;
  while (i < target.length) {
    if (target.startsWith(key, i)) return i + key.length;
    const amp = target.indexOf('&', i);
    if (amp === -1) return -1;
    i = amp + 1;
  }
  return -1;
}

/** The index of the first of the route's query matchers the target fails, or -1 when it passes them all. */
function queryMismatch(route: CompiledRoute, target: string): number {
  const q = target.indexOf('?');
  if (q === -1) return 0;
  for (let i = 0; i < route.query.length; i++) {
    const m = route.query[i]!;
    const start = queryValueStart(target, q + 1, m.key);
    if (start === -1) return i;
    let end = target.indexOf('&', start);
    if (end === -1) end = target.length;
    if (m.exact !== undefined) {
      if (end - start !== m.exact.length || !target.startsWith(m.exact, start)) return i;
    } else if (!m.regex!.test(target.slice(start, end))) {
      return i;
    }
  }
  return -1;
}

/**
 * Why a route does not take a request: {@link MATCHED} (0) when it does, else its first
 * failing condition, in the order they are tried. A number, so the request path pays
 * what a boolean costs; `trellis explain` turns it into words (describeMismatch).
 */
export const MATCHED = 0;
const MISMATCH_METHOD = 1;
const MISMATCH_HOST = 2;
const MISMATCH_PATH = 3;
/** + the index of the header matcher that failed (Gateway API allows 16). */
const MISMATCH_HEADER = 0x100;
/** + the index of the query matcher that failed. */
const MISMATCH_QUERY = 0x200;

function mismatch(route: CompiledRoute, req: RequestHead, values: readonly (string | undefined)[]): number {
  if (route.method !== undefined && route.method !== req.method) return MISMATCH_METHOD;
  if ((route.hostExact !== undefined || route.hostSuffix !== undefined) && !hostMatches(route, req.host)) return MISMATCH_HOST;
  const type = route.pathType;
  if (type === 'Exact') {
    if (req.path !== route.pathValue) return MISMATCH_PATH;
  } else if (type === 'PathPrefix') {
    if (!prefixMatches(req.path, route.pathPrefix)) return MISMATCH_PATH;
  } else if (type === 'RegularExpression') {
    if (!route.pathRegex!.test(req.path)) return MISMATCH_PATH;
  }
  const headers = route.headers;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    const v = values[h.slot];
    if (v === undefined || (h.exact !== undefined ? v !== h.exact : !h.regex!.test(v))) return MISMATCH_HEADER + i;
  }
  if (route.query.length === 0) return MATCHED;
  const q = queryMismatch(route, req.target);
  return q === -1 ? MATCHED : MISMATCH_QUERY + q;
}

/** What matching reads of an upstream: its routes and the header values they match on. */
export type RouteTable = Pick<CompiledUpstream, 'routes' | 'headerNames' | 'headerValues'>;

/**
 * A route table for matching only (no backends, no defaults): the inbound side's copy of
 * its service's routes, to know which rule a request falls under (a rate limit on a rule).
 */
export function compileRouteTable(entries: readonly RouteEntry[]): RouteTable {
  const headerNames: string[] = [];
  const slotOf = (name: string): number => {
    const i = headerNames.indexOf(name);
    return i !== -1 ? i : headerNames.push(name) - 1;
  };
  const routes = entries.map((r) => compileRoute(r, undefined, slotOf));
  return { routes, headerNames, headerValues: headerNames.map(() => undefined) };
}

/** The first route that matches the request, or undefined (→ 404 no-route). */
export function matchRoute(upstream: RouteTable, req: RequestHead): CompiledRoute | undefined {
  const values = upstream.headerValues;
  if (values.length > 0) readHeaders(req.lines, upstream.headerNames, values);
  for (const r of upstream.routes) if (mismatch(r, req, values) === MATCHED) return r;
  return undefined;
}

/** One route as `explainRoutes` found it: the condition that failed (words), or matched. */
export interface RouteVerdict {
  readonly route: CompiledRoute;
  readonly result: 'matched' | 'no-match' | 'not-tried';
  /** `method`, `hostname`, `path`, `header <name>`, `query <name>`. */
  readonly condition?: string;
  /** What the condition wants, and what the request has. */
  readonly reason?: string;
}

/**
 * The routes of `upstream` in the order the proxy tries them, with the verdict the
 * request path's own matcher gives each (`mismatch`, the one implementation): the first
 * that matches, why each before it did not, and the rest as not tried.
 */
export function explainRoutes(upstream: CompiledUpstream, req: RequestHead): RouteVerdict[] {
  const values: (string | undefined)[] = upstream.headerNames.map(() => undefined);
  if (values.length > 0) readHeaders(req.lines, upstream.headerNames, values);
  const out: RouteVerdict[] = [];
  let found = false;
  for (const route of upstream.routes) {
    if (found) {
      out.push({ route, result: 'not-tried' });
      continue;
    }
    const code = mismatch(route, req, values);
    if (code === MATCHED) {
      found = true;
      out.push({ route, result: 'matched' });
    } else {
      out.push({ route, result: 'no-match', ...describeMismatch(route, code, req, values) });
    }
  }
  return out;
}

function describeMismatch(
  route: CompiledRoute,
  code: number,
  req: RequestHead,
  values: readonly (string | undefined)[],
): { condition: string; reason: string } {
  const got = (v: string | undefined): string => (v === undefined ? 'absent' : JSON.stringify(v));
  if (code === MISMATCH_METHOD) return { condition: 'method', reason: `wants ${route.method}, got ${req.method}` };
  if (code === MISMATCH_HOST) return { condition: 'hostname', reason: `wants ${route.hostExact ?? `*${route.hostSuffix}`}, got ${JSON.stringify(req.host)}` };
  if (code === MISMATCH_PATH) {
    const want = route.pathType === 'Exact' ? 'exactly' : route.pathType === 'PathPrefix' ? 'the prefix' : 'to match';
    return { condition: 'path', reason: `wants ${want} ${JSON.stringify(route.pathValue)}, got ${JSON.stringify(req.path)}` };
  }
  if (code >= MISMATCH_QUERY) {
    const m = route.query[code - MISMATCH_QUERY]!;
    const name = m.key.slice(0, -1);
    const q = req.target.indexOf('?');
    const start = q === -1 ? -1 : queryValueStart(req.target, q + 1, m.key);
    const end = start === -1 ? -1 : req.target.indexOf('&', start);
    const value = start === -1 ? undefined : req.target.slice(start, end === -1 ? undefined : end);
    const want = m.exact !== undefined ? `exactly ${JSON.stringify(m.exact)}` : `to match /${m.regex!.source}/`;
    return { condition: `query ${name}`, reason: `wants ${want}, got ${got(value)}` };
  }
  const h = route.headers[code - MISMATCH_HEADER]!;
  const want = h.exact !== undefined ? `exactly ${JSON.stringify(h.exact)}` : `to match /${h.regex!.source}/`;
  return { condition: `header ${h.name}`, reason: `wants ${want}, got ${got(values[h.slot])}` };
}

/** The first value of each of `names` (lower case) in the header lines, trimmed; undefined when absent. */
function readHeaders(lines: readonly string[], names: readonly string[], out: (string | undefined)[]): void {
  out.fill(undefined);
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      if (out[i] !== undefined || name.length !== colon || !equalsLower(line, 0, name)) continue;
      let from = colon + 1;
      let to = line.length;
      while (from < to && (line.charCodeAt(from) === 32 || line.charCodeAt(from) === 9)) from++;
      while (to > from && (line.charCodeAt(to - 1) === 32 || line.charCodeAt(to - 1) === 9)) to--;
      out[i] = line.slice(from, to);
    }
  }
}

/** Picks a backend by weight: its index in `route.backends`, or -1 when every weight is zero. */
export function pickBackendIndex(route: CompiledRoute, random = Math.random): number {
  const n = route.backends.length;
  if (n <= 1) return n - 1;
  const x = random() * route.totalWeight;
  for (let i = 0; i < n; i++) if (x < route.cumulative[i]!) return i;
  return n - 1;
}

/** Picks a backend name by weight; undefined when every weight is zero. */
export function pickBackend(route: CompiledRoute, random = Math.random): string | undefined {
  const i = pickBackendIndex(route, random);
  return i === -1 ? undefined : route.backends[i];
}
