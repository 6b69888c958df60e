// Routes → the ordered route table of one service. Every (hostname, rule, match) of an
// HTTPRoute or GRPCRoute becomes one RouteEntry, and the entries are sorted by Gateway
// API precedence so that a proxy can simply take the first entry that matches. A tcp
// service gets at most one entry, from its TCPRoute: the weighted backends. An
// HTTPRoute rule's timeouts, retry and the policies aimed at it ride on its entries.
import type { InvalidBackend, Protocol, RouteEntry, RouteFilter, RouteMatch, HeaderEditsSpec } from '../../api/protocol.js';
import type {
  BackendRefConfig,
  ControlConfig,
  GRPCRouteMatchConfig,
  HTTPRouteMatchConfig,
  HTTPRouteRuleConfig,
  RouteConfig,
  RouteFilterConfig,
} from '../sources/mesh-config.js';
import { ruleResilience } from './resilience.js';
import { DEFAULT_NAMESPACE, serviceKey, splitServiceKey } from '../../api/names.js';
import { backendGranted, type BackendResolver, type Grants } from './reference-grants.js';

/** The namespace of a route (`default` when it names none). */
export function routeNamespace(route: RouteConfig): string {
  return route.metadata.namespace ?? DEFAULT_NAMESPACE;
}

/**
 * True when one of the route's parentRefs names the mesh Service whose key is `service`
 * (GAMMA; a parentRef without a namespace is in the route's) and, for one port of a
 * multi-port service, that port or none (a parentRef without a port binds to every port
 * of the Service; the Gateway API's MeshPorts).
 */
export function routeAttachesTo(route: RouteConfig, service: string, port?: number): boolean {
  const { name, namespace } = splitServiceKey(service);
  const own = routeNamespace(route);
  return route.spec.parentRefs.some(
    (ref) =>
      ref.name === name &&
      (ref.namespace ?? own) === namespace &&
      // A Service, or an ExternalService (check-routes.ts: their names never clash).
      (((ref.kind ?? 'Service') === 'Service' && (ref.group ?? '') === '') || (ref.kind === 'ExternalService' && ref.group === 'trellis.dev')) &&
      (port === undefined || ref.port === undefined || ref.port === port),
  );
}

/**
 * The routes of `service` that apply to a caller in namespace `caller` (GEP-1294): a
 * producer route (in the Service's namespace) applies to every caller; a consumer route
 * (in another namespace) only to callers in its own namespace, and for them it replaces
 * the producer routes. At one port of a multi-port service only the routes bound to it
 * count, so a consumer route bound to one port replaces the producer routes of that port
 * alone. Returned as indexes into `routes` (file order is a tie-breaker).
 */
export function routesForCaller(service: string, routes: ControlConfig['routes'], caller: string, port?: number): number[] {
  const { namespace } = splitServiceKey(service);
  const producer: number[] = [];
  const consumer: number[] = [];
  routes.forEach(({ resource }, i) => {
    if (!routeAttachesTo(resource, service, port)) return;
    const ns = routeNamespace(resource);
    if (ns === namespace) producer.push(i);
    else if (ns === caller) consumer.push(i);
  });
  return consumer.length > 0 ? consumer : producer;
}

/** What compiling a route table needs to know beyond the routes: who calls, and which cross-namespace references are granted. */
export interface RouteContext {
  /** The caller's namespace; absent: the Service's own (producer routes only). */
  readonly caller?: string;
  readonly grants?: Grants;
  /** The Service a backend name stands for in a namespace (for ReferenceGrant `to.name`). */
  readonly resolve?: BackendResolver;
  /** One port of a multi-port service: only the routes bound to it or to every port; absent: every route. */
  readonly port?: number;
  /** The service ports of the Service a backend name stands for, when it lists them; undefined: a one-port service. */
  readonly portsOf?: (namespace: string, name: string) => readonly number[] | undefined;
  /** A Gateway listener's routes (indexes into the routes), instead of those attached to the Service. */
  readonly attached?: readonly number[];
  /** A Gateway listener's hostname: route hostnames narrowed to it (Gateway API); none left: the route does not attach. */
  readonly listenerHostname?: string;
}

/** Whether hostname pattern `pattern` (`*.x` or exact) takes every name `name` stands for. */
function covers(pattern: string, name: string): boolean {
  if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1;
  return pattern === name;
}

/** A route's hostnames narrowed to a listener's (the Gateway API's intersection); [] when none fit. */
function narrow(hostnames: readonly (string | undefined)[], listener: string | undefined): (string | undefined)[] {
  if (listener === undefined) return [...hostnames];
  const out: (string | undefined)[] = [];
  for (const h of hostnames) {
    if (h === undefined || covers(h, listener)) out.push(listener);
    else if (covers(listener, h)) out.push(h);
  }
  return [...new Set(out)];
}

/** Who refers to a backend: the route's kind and namespace, and the Services it is attached to. */
export interface RefSource {
  readonly kind: string;
  readonly namespace: string;
  /** The route's parentRefs, resolved to (namespace, name); absent: none counted. */
  readonly parents?: readonly { readonly namespace: string; readonly name: string }[];
}

/**
 * Where a route's backendRef or mirror points: the backend key, or why it is invalid
 * (Gateway API ResolvedRefs). A backendRef into another namespace needs a ReferenceGrant
 * there, except to the Service the route is attached to: a consumer route (GEP-1294)
 * only shapes traffic already addressed to that Service, so sending it there grants
 * nothing new (the upstream MeshConsumerRoute case has no grant, for this reason).
 */
export function backendTarget(
  ref: { readonly name: string; readonly namespace?: string; readonly port?: number },
  from: RefSource,
  ctx: RouteContext,
): { key: string; invalid?: InvalidBackend } {
  const namespace = ref.namespace ?? from.namespace;
  let key = serviceKey(ref.name, namespace);
  // A backendRef's port picks the port of a multi-port Service the requests go to: the
  // backend key names it (`<key>:<port>`) unless it is the port being routed.
  const ports = ref.port === undefined ? undefined : ctx.portsOf?.(namespace, ref.name);
  if (ports !== undefined && ref.port !== undefined) {
    if (!ports.includes(ref.port)) {
      return {
        key,
        invalid: { reason: 'BackendNotFound', message: `Service "${ref.name}" has no port ${ref.port} (ports: ${ports.join(', ')}); name one of them` },
      };
    }
    if (ref.port !== ctx.port) key = `${key}:${ref.port}`;
  }
  const service = ctx.resolve?.(namespace, ref.name);
  if (ctx.resolve !== undefined && service === undefined) {
    const where = namespace === DEFAULT_NAMESPACE ? ' in the mesh' : ` in namespace ${namespace}`;
    return {
      key,
      invalid: {
        reason: 'BackendNotFound',
        message: `no Service "${ref.name}"${where}, nor <service>-<version> of one; add the service, or remove the backendRef`,
      },
    };
  }
  if (namespace === from.namespace) return { key };
  if (service !== undefined && from.parents?.some((p) => p.namespace === namespace && p.name === service)) return { key };
  if (backendGranted(ctx.grants, from, namespace, ref.name, ctx.resolve)) return { key };
  return {
    key,
    invalid: {
      reason: 'RefNotPermitted',
      message: `it is in namespace ${namespace}, and no ReferenceGrant there lets ${from.kind}s of namespace ${from.namespace} reach it`,
    },
  };
}

/** `<namespace>/<name>`, the route's identity in names and tie-breaks. */
export function routeKey(route: RouteConfig): string {
  return `${route.metadata.namespace ?? 'default'}/${route.metadata.name}`;
}

/** Fills the Gateway API defaults so the proxy never has to: path `PathPrefix /`, match types `Exact`. */
export function normalizeMatch(match: HTTPRouteMatchConfig | undefined): RouteMatch {
  const out: RouteMatch = { path: { type: match?.path?.type ?? 'PathPrefix', value: match?.path?.value ?? '/' } };
  if (match?.method) out.method = match.method.toUpperCase();
  if (match?.headers && match.headers.length > 0) {
    // Header names are case-insensitive; proxies compare against lower-cased names.
    out.headers = match.headers.map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value }));
  }
  if (match?.queryParams && match.queryParams.length > 0) {
    out.queryParams = match.queryParams.map((q) => ({ name: q.name, type: q.type ?? 'Exact', value: q.value }));
  }
  return out;
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Content types of gRPC (`application/grpc`, `application/grpc+proto`, ...). */
export const GRPC_CONTENT_TYPE = 'application/grpc(?:[+;].*)?';

/**
 * A GRPCRoute match as an HTTP match: a gRPC call is `POST /<service>/<method>` with a
 * gRPC content type, so the entry only takes gRPC traffic and can share the table
 * with the service's HTTPRoutes.
 */
export function grpcMatch(match: GRPCRouteMatchConfig | undefined): RouteMatch {
  const m = match?.method;
  const service = m?.service;
  const method = m?.method;
  let path: RouteMatch['path'];
  if ((m?.type ?? 'Exact') === 'Exact') {
    if (service !== undefined && method !== undefined) path = { type: 'Exact', value: `/${service}/${method}` };
    else if (service !== undefined) path = { type: 'PathPrefix', value: `/${service}` };
    else if (method !== undefined) path = { type: 'RegularExpression', value: `/[^/]+/${escapeRegex(method)}` };
  } else if (service !== undefined || method !== undefined) {
    path = { type: 'RegularExpression', value: `/(?:${service ?? '[^/]+'})/(?:${method ?? '[^/]+'})` };
  }
  const headers = (match?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value }));
  headers.push({ name: 'content-type', type: 'RegularExpression', value: GRPC_CONTENT_TYPE });
  return { path: path ?? { type: 'PathPrefix', value: '/' }, method: 'POST', headers };
}

function headerEdits(m: NonNullable<RouteFilterConfig['requestHeaderModifier']>): HeaderEditsSpec {
  const out: HeaderEditsSpec = {};
  if (m.set?.length) out.set = m.set.map((h) => ({ name: h.name.toLowerCase(), value: h.value }));
  if (m.add?.length) out.add = m.add.map((h) => ({ name: h.name.toLowerCase(), value: h.value }));
  if (m.remove?.length) out.remove = m.remove.map((n) => n.toLowerCase());
  return out;
}

function pathModifier(p: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; replaceFullPath?: string; replacePrefixMatch?: string } | undefined) {
  if (p === undefined) return undefined;
  return { type: p.type, value: (p.type === 'ReplaceFullPath' ? p.replaceFullPath : p.replacePrefixMatch) ?? '/' };
}

/**
 * Gateway API filters → the snapshot's normalized form; a filter missing its config
 * (refused by validation) is skipped, and so is a mirror into another namespace that no
 * ReferenceGrant allows (a mirror never fails the request, so it just copies nothing).
 */
export function normalizeFilters(
  filters: readonly RouteFilterConfig[] | undefined,
  from: RefSource = { kind: 'HTTPRoute', namespace: DEFAULT_NAMESPACE },
  ctx: RouteContext = {},
): RouteFilter[] | undefined {
  if (filters === undefined || filters.length === 0) return undefined;
  const out: RouteFilter[] = [];
  for (const f of filters) {
    switch (f.type) {
      case 'RequestHeaderModifier':
        if (f.requestHeaderModifier) out.push({ type: f.type, edits: headerEdits(f.requestHeaderModifier) });
        break;
      case 'ResponseHeaderModifier':
        if (f.responseHeaderModifier) out.push({ type: f.type, edits: headerEdits(f.responseHeaderModifier) });
        break;
      case 'RequestRedirect': {
        const r = f.requestRedirect;
        if (!r) break;
        const path = pathModifier(r.path);
        out.push({
          type: f.type,
          statusCode: r.statusCode ?? 302,
          ...(r.scheme ? { scheme: r.scheme } : {}),
          ...(r.hostname ? { hostname: r.hostname } : {}),
          ...(path ? { path } : {}),
          ...(r.port ? { port: r.port } : {}),
        });
        break;
      }
      case 'URLRewrite': {
        const r = f.urlRewrite;
        if (!r) break;
        const path = pathModifier(r.path);
        out.push({ type: f.type, ...(r.hostname ? { hostname: r.hostname } : {}), ...(path ? { path } : {}) });
        break;
      }
      case 'RequestMirror': {
        const m = f.requestMirror;
        if (!m) break;
        const percent = m.percent ?? (m.fraction ? (100 * m.fraction.numerator) / (m.fraction.denominator ?? 100) : 100);
        const target = backendTarget(m.backendRef, from, ctx);
        if (target.invalid === undefined) out.push({ type: f.type, backend: target.key, percent });
        break;
      }
    }
  }
  return out.length > 0 ? out : undefined;
}

function backendsOf(refs: readonly BackendRefConfig[] | undefined, from: RefSource, ctx: RouteContext): RouteEntry['backends'] {
  return (refs ?? []).map((ref) => {
    const filters = normalizeFilters(ref.filters, from, ctx);
    const target = backendTarget(ref, from, ctx);
    return {
      backend: target.key,
      weight: ref.weight ?? 1,
      ...(filters ? { filters } : {}),
      // An invalid backendRef keeps its weight: its share of requests gets 500 (Gateway API).
      ...(target.invalid !== undefined ? { invalid: target.invalid } : {}),
    };
  });
}

interface Candidate {
  readonly entry: RouteEntry;
  readonly grpc: boolean;
  /** Position of the route in the config (file order). */
  readonly routeIndex: number;
  readonly created: number | undefined;
  readonly key: string;
  readonly ruleIndex: number;
  readonly matchIndex: number;
  readonly hostIndex: number;
  /** GRPCRoute only: characters of the service and method matched. */
  readonly serviceChars: number;
  readonly methodChars: number;
}

function creationTime(route: RouteConfig): number | undefined {
  const t = route.metadata.creationTimestamp ? Date.parse(route.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Hostname precedence (Gateway API: the most characters in a matching non-wildcard
 * hostname, then in a matching hostname): exact names, longest first; then wildcards,
 * longest first; then entries of routes with no hostnames (any host).
 */
function compareHostnames(a: string | undefined, b: string | undefined): number {
  const rank = (h: string | undefined): number => (h === undefined ? 2 : h.startsWith('*.') ? 1 : 0);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  return (b?.length ?? 0) - (a?.length ?? 0);
}

// Exact, then RegularExpression, then PathPrefix: the Gateway API leaves regular
// expressions' place to implementations; before prefixes (as Envoy Gateway does) so a
// catch-all `PathPrefix /` can't hide them.
const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

/** HTTPRoute precedence: path, method, header matches, query param matches. */
function compareHttp(a: RouteMatch, b: RouteMatch): number {
  const ta = PATH_RANK[a.path?.type ?? 'PathPrefix'];
  const tb = PATH_RANK[b.path?.type ?? 'PathPrefix'];
  if (ta !== tb) return ta - tb;
  if (ta !== 0) {
    const lenA = a.path?.value.length ?? 1;
    const lenB = b.path?.value.length ?? 1;
    if (lenA !== lenB) return lenB - lenA;
  }
  const methodA = a.method ? 0 : 1;
  const methodB = b.method ? 0 : 1;
  if (methodA !== methodB) return methodA - methodB;
  const headersA = a.headers?.length ?? 0;
  const headersB = b.headers?.length ?? 0;
  if (headersA !== headersB) return headersB - headersA;
  return (b.queryParams?.length ?? 0) - (a.queryParams?.length ?? 0);
}

/**
 * Gateway API precedence. First the hostname the entry matched on; then GRPCRoute
 * entries before HTTPRoute ones (they only take gRPC calls, which an HTTPRoute would
 * otherwise swallow with a prefix); then each kind's own order: HTTPRoute by path
 * (Exact, RegularExpression, longer PathPrefix), method, more header matches, more
 * query param matches; GRPCRoute by characters of the matched service, of the matched
 * method, more header matches. Then the older route (creationTimestamp; without one,
 * file order), then `<namespace>/<name>` alphabetically; then rule, match and hostname order.
 */
function comparePrecedence(a: Candidate, b: Candidate): number {
  const host = compareHostnames(a.entry.hostname, b.entry.hostname);
  if (host !== 0) return host;
  if (a.grpc !== b.grpc) return a.grpc ? -1 : 1;
  if (a.grpc) {
    if (a.serviceChars !== b.serviceChars) return b.serviceChars - a.serviceChars;
    if (a.methodChars !== b.methodChars) return b.methodChars - a.methodChars;
    const ha = a.entry.match.headers?.length ?? 0;
    const hb = b.entry.match.headers?.length ?? 0;
    if (ha !== hb) return hb - ha;
  } else {
    const c = compareHttp(a.entry.match, b.entry.match);
    if (c !== 0) return c;
  }
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
  if (a.matchIndex !== b.matchIndex) return a.matchIndex - b.matchIndex;
  return a.hostIndex - b.hostIndex;
}

/**
 * The route table of `service` (at service port `port` of a multi-port service: the
 * routes bound to that port or to every port): for an http service, one entry per (hostname, rule,
 * match) of every HTTPRoute and GRPCRoute whose parentRefs name it, in precedence
 * order (a rule without matches matches every request); for a tcp service, the first
 * TCPRoute's one rule. Backend names are kept as written even when they resolve to
 * nothing, so the proxy can answer `backend-not-found` instead of the route silently vanishing.
 */
export function compileRoutes(
  service: string,
  routes: ControlConfig['routes'],
  protocol: Protocol = 'http',
  policies?: ControlConfig['policies'],
  ctx: RouteContext = {},
): RouteEntry[] {
  const candidates: Candidate[] = [];
  const caller = ctx.caller ?? splitServiceKey(service).namespace;
  for (const routeIndex of ctx.attached ?? routesForCaller(service, routes, caller, ctx.port)) {
    const resource = routes[routeIndex]!.resource;
    const key = routeKey(resource);
    const namespace = routeNamespace(resource);
    const parents = (resource.spec.parentRefs ?? []).map((p) => ({ namespace: p.namespace ?? namespace, name: p.name }));
    const from: RefSource = { kind: resource.kind ?? 'HTTPRoute', namespace, parents };
    const created = creationTime(resource);
    const base = { routeIndex, created, key };
    if (resource.kind === 'TCPRoute') {
      if (protocol !== 'tcp') continue;
      const rule = resource.spec.rules[0];
      if (rule === undefined) continue;
      const entry: RouteEntry = { name: `${key}/rule/0`, match: {}, backends: backendsOf(rule.backendRefs, from, ctx) };
      candidates.push({ ...base, entry, grpc: false, ruleIndex: 0, matchIndex: 0, hostIndex: 0, serviceChars: 0, methodChars: 0 });
      continue;
    }
    // HTTP routes apply to a detected service's HTTP traffic too.
    if (protocol === 'tcp') continue;
    const written: (string | undefined)[] = resource.spec.hostnames?.length ? resource.spec.hostnames.map((h) => h.toLowerCase()) : [undefined];
    const hostnames = ctx.attached === undefined ? written : narrow(written, ctx.listenerHostname);
    resource.spec.rules.forEach((rule, ruleIndex) => {
      const backends = backendsOf(rule.backendRefs, from, ctx);
      const filters = normalizeFilters(rule.filters, from, ctx);
      const grpc = resource.kind === 'GRPCRoute';
      // Timeouts, retries and faults are HTTPRoute's (GRPCRoute has no such fields yet).
      const resilience = resource.kind === 'HTTPRoute' ? ruleResilience(resource, rule as HTTPRouteRuleConfig, policies) : {};
      const matches: readonly (HTTPRouteMatchConfig | GRPCRouteMatchConfig | undefined)[] =
        rule.matches && rule.matches.length > 0 ? rule.matches : [undefined];
      matches.forEach((match, matchIndex) => {
        const m = grpc ? grpcMatch(match as GRPCRouteMatchConfig | undefined) : normalizeMatch(match as HTTPRouteMatchConfig | undefined);
        const gm = grpc ? (match as GRPCRouteMatchConfig | undefined)?.method : undefined;
        hostnames.forEach((hostname, hostIndex) => {
          const entry: RouteEntry = {
            name: `${key}/rule/${ruleIndex}`,
            ...(hostname ? { hostname } : {}),
            match: m,
            ...(filters ? { filters } : {}),
            backends,
            ...resilience,
          };
          candidates.push({
            ...base,
            entry,
            grpc,
            ruleIndex,
            matchIndex,
            hostIndex,
            serviceChars: gm?.service?.length ?? 0,
            methodChars: gm?.method?.length ?? 0,
          });
        });
      });
    });
  }
  const sorted = candidates.sort(comparePrecedence);
  // A tcp service uses one TCPRoute: the oldest (validation refuses a second).
  const picked = protocol === 'tcp' ? sorted.slice(0, 1) : sorted;
  // Entries share objects while compiling; the snapshot gets its own copies.
  return picked.map((c) => structuredClone(c.entry));
}
