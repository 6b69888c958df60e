// Route matching for one upstream service: the control plane sends route entries in
// Gateway API precedence order, so the first entry that matches wins. Compiling a
// snapshot turns them into closures-free records with pre-built regexes and weight
// tables, so matching a request allocates nothing.
import { DEFAULT_RETRY_BUDGET, type Endpoint, type FaultConfig, type RetryBudgetConfig, type RetryConfig, type RouteEntry, type RouteTimeouts, type UpstreamSnapshot } from '../control/protocol.js';
import { RetryBudget } from './retry-budget.js';
import { headerValue, type RequestHead } from './http1-parser.js';
import type { Balancer } from './balancer/balancer.js';
import { RoundRobinBalancer } from './balancer/round-robin.js';

interface HeaderMatcher {
  readonly name: string;
  readonly exact?: string;
  readonly regex?: RegExp;
}

export interface CompiledBackend {
  readonly name: string;
  readonly balancer: Balancer;
}

export interface CompiledRoute {
  readonly name: string;
  readonly pathType: 'Exact' | 'PathPrefix' | undefined;
  readonly pathValue: string;
  readonly method: string | undefined;
  readonly headers: readonly HeaderMatcher[];
  /** Backend names with cumulative weights, for a weighted random pick. */
  readonly backends: readonly string[];
  readonly cumulative: readonly number[];
  readonly totalWeight: number;
  // Resilience: undefined when the rule has none, so the layers skip it with one test.
  readonly timeouts: RouteTimeouts | undefined;
  readonly retry: RetryConfig | undefined;
  readonly fault: FaultConfig | undefined;
}

export interface CompiledUpstream {
  readonly service: string;
  readonly protocol: 'http' | 'tcp';
  readonly routes: readonly CompiledRoute[];
  readonly backends: ReadonlyMap<string, CompiledBackend>;
  /** The destination's retry budget; undefined when no route of it retries. */
  readonly budget: RetryBudget | undefined;
}

/** Gives the budget of a service: a sidecar keeps one per destination across snapshots. */
export type BudgetSource = (service: string, config: RetryBudgetConfig) => RetryBudget;

/** The route used when a service has no HTTPRoute: every request to backend `<service>`. */
function defaultRoute(service: string, fault: FaultConfig | undefined): CompiledRoute {
  return {
    name: `default/${service}`, pathType: undefined, pathValue: '/', method: undefined, headers: [],
    backends: [service], cumulative: [1], totalWeight: 1, timeouts: undefined, retry: undefined, fault,
  };
}

function compileRoute(entry: RouteEntry, serviceFault: FaultConfig | undefined): CompiledRoute {
  const headers: HeaderMatcher[] = (entry.match.headers ?? []).map((h) =>
    h.type === 'RegularExpression'
      ? { name: h.name.toLowerCase(), regex: new RegExp(`^(?:${h.value})$`) }
      : { name: h.name.toLowerCase(), exact: h.value },
  );
  const backends: string[] = [];
  const cumulative: number[] = [];
  let total = 0;
  for (const b of entry.backends) {
    if (!(b.weight > 0)) continue;
    total += b.weight;
    backends.push(b.backend);
    cumulative.push(total);
  }
  return {
    name: entry.name,
    pathType: entry.match.path?.type,
    pathValue: entry.match.path?.value ?? '/',
    method: entry.match.method,
    headers,
    backends,
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
  makeBalancer: (e: readonly Endpoint[]) => Balancer = (e) => new RoundRobinBalancer(e),
  budgetFor: BudgetSource = (_, c) => new RetryBudget(c),
): CompiledUpstream {
  const routes = snap.routes.length > 0 ? snap.routes.map((r) => compileRoute(r, snap.fault)) : [defaultRoute(snap.service, snap.fault)];
  const backends = new Map<string, CompiledBackend>();
  for (const [name, b] of Object.entries(snap.backends)) {
    backends.set(name, { name, balancer: makeBalancer(b.endpoints) });
  }
  const budget = routes.some((r) => r.retry !== undefined) ? budgetFor(snap.service, snap.retryBudget ?? DEFAULT_RETRY_BUDGET) : undefined;
  return { service: snap.service, protocol: snap.protocol, routes, backends, budget };
}

/** PathPrefix matches whole path elements: `/api` matches `/api` and `/api/x`, not `/apix`. */
function prefixMatches(path: string, prefix: string): boolean {
  if (prefix === '/' || prefix === '') return true;
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (!path.startsWith(p)) return false;
  return path.length === p.length || path.charCodeAt(p.length) === 47;
}

function matches(route: CompiledRoute, req: RequestHead): boolean {
  if (route.pathType === 'Exact' ? req.path !== route.pathValue : route.pathType === 'PathPrefix' && !prefixMatches(req.path, route.pathValue)) {
    return false;
  }
  if (route.method !== undefined && route.method !== req.method) return false;
  for (const h of route.headers) {
    const v = headerValue(req.lines, h.name);
    if (v === undefined) return false;
    if (h.exact !== undefined ? v !== h.exact : !h.regex!.test(v)) return false;
  }
  return true;
}

/** The first route that matches the request, or undefined (→ 404 no-route). */
export function matchRoute(upstream: CompiledUpstream, req: RequestHead): CompiledRoute | undefined {
  for (const r of upstream.routes) if (matches(r, req)) return r;
  return undefined;
}

/** Picks a backend name by weight; undefined when every weight is zero. */
export function pickBackend(route: CompiledRoute, random = Math.random): string | undefined {
  const n = route.backends.length;
  if (n === 0) return undefined;
  if (n === 1) return route.backends[0];
  const x = random() * route.totalWeight;
  for (let i = 0; i < n; i++) if (x < route.cumulative[i]!) return route.backends[i];
  return route.backends[n - 1];
}
