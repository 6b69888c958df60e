// HTTPRoutes → the ordered route table of one service. Every (rule, match) pair becomes
// one RouteEntry, and the entries are sorted by Gateway API precedence so that a proxy
// can simply take the first entry that matches.
import type { RouteEntry, RouteMatch } from './protocol.js';
import type { ControlConfig, HTTPRouteConfig, HTTPRouteMatchConfig } from './mesh-config.js';
import { ruleResilience } from './resilience.js';

/** True when one of the route's parentRefs names the mesh Service `service` (GAMMA). */
export function routeAttachesTo(route: HTTPRouteConfig, service: string): boolean {
  return route.spec.parentRefs.some(
    (ref) => ref.name === service && (ref.kind ?? 'Service') === 'Service' && (ref.group ?? '') === '',
  );
}

/** `<namespace>/<name>`, the route's identity in names and tie-breaks. */
export function routeKey(route: HTTPRouteConfig): string {
  return `${route.metadata.namespace ?? 'default'}/${route.metadata.name}`;
}

/** Fills the Gateway API defaults so the proxy never has to: path `PathPrefix /`, header type `Exact`. */
export function normalizeMatch(match: HTTPRouteMatchConfig | undefined): RouteMatch {
  const out: RouteMatch = { path: { type: match?.path?.type ?? 'PathPrefix', value: match?.path?.value ?? '/' } };
  if (match?.method) out.method = match.method.toUpperCase();
  if (match?.headers && match.headers.length > 0) {
    // Header names are case-insensitive; proxies compare against node's lower-cased names.
    out.headers = match.headers.map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value }));
  }
  return out;
}

interface Candidate {
  readonly entry: RouteEntry;
  /** Position of the route in the config (file order). */
  readonly routeIndex: number;
  readonly created: number | undefined;
  readonly key: string;
  readonly ruleIndex: number;
  readonly matchIndex: number;
}

function creationTime(route: HTTPRouteConfig): number | undefined {
  const t = route.metadata.creationTimestamp ? Date.parse(route.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Gateway API HTTPRoute precedence: Exact path before PathPrefix; longer prefix first;
 * a method match before none; more header matches first; then the older route
 * (creationTimestamp; without one, file order), then `<namespace>/<name>`
 * alphabetically; then rule order and match order within a route.
 */
function comparePrecedence(a: Candidate, b: Candidate): number {
  const pa = a.entry.match.path;
  const pb = b.entry.match.path;
  const exactA = pa?.type === 'Exact' ? 0 : 1;
  const exactB = pb?.type === 'Exact' ? 0 : 1;
  if (exactA !== exactB) return exactA - exactB;
  if (exactA === 1) {
    const lenA = pa?.value.length ?? 1;
    const lenB = pb?.value.length ?? 1;
    if (lenA !== lenB) return lenB - lenA;
  }
  const methodA = a.entry.match.method ? 0 : 1;
  const methodB = b.entry.match.method ? 0 : 1;
  if (methodA !== methodB) return methodA - methodB;
  const headersA = a.entry.match.headers?.length ?? 0;
  const headersB = b.entry.match.headers?.length ?? 0;
  if (headersA !== headersB) return headersB - headersA;
  if (a.routeIndex !== b.routeIndex) {
    // Age as the tuple (creationTimestamp, file order): routes with no timestamp count
    // as newest, and among themselves are ordered by where they appear in the files.
    const createdA = a.created ?? Infinity;
    const createdB = b.created ?? Infinity;
    if (createdA !== createdB) return createdA < createdB ? -1 : 1;
    if (a.created === undefined) return a.routeIndex - b.routeIndex;
    if (a.key !== b.key) return a.key < b.key ? -1 : 1;
    return a.routeIndex - b.routeIndex;
  }
  if (a.ruleIndex !== b.ruleIndex) return a.ruleIndex - b.ruleIndex;
  return a.matchIndex - b.matchIndex;
}

/**
 * The route table of `service`: one entry per (rule, match) of every HTTPRoute whose
 * parentRefs name it, in precedence order. A rule without matches matches every request.
 * Backend names are kept as written even when they resolve to nothing, so the proxy can
 * answer `backend-not-found` instead of the route silently vanishing.
 */
export function compileRoutes(service: string, routes: ControlConfig['routes'], policies?: ControlConfig['policies']): RouteEntry[] {
  const candidates: Candidate[] = [];
  routes.forEach(({ resource }, routeIndex) => {
    if (!routeAttachesTo(resource, service)) return;
    const key = routeKey(resource);
    const created = creationTime(resource);
    resource.spec.rules.forEach((rule, ruleIndex) => {
      const backends = (rule.backendRefs ?? []).map((ref) => ({ backend: ref.name, weight: ref.weight ?? 1 }));
      const resilience = ruleResilience(resource, rule, policies);
      const matches = rule.matches && rule.matches.length > 0 ? rule.matches : [undefined];
      matches.forEach((match, matchIndex) => {
        const entry: RouteEntry = { name: `${key}/rule/${ruleIndex}`, match: normalizeMatch(match), backends, ...resilience };
        candidates.push({ entry, routeIndex, created, key, ruleIndex, matchIndex });
      });
    });
  });
  return candidates.sort(comparePrecedence).map((c) => ({ ...c.entry, backends: c.entry.backends.map((b) => ({ ...b })) }));
}
