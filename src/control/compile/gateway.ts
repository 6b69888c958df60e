// A Gateway, compiled for the gateway proxy that serves it: per port, one route table
// (an upstream of the snapshot, keyed `<namespace>/<gateway>/<port>`) made of the routes
// attached to the port's listeners (parentRefs kind Gateway, sectionName the listener
// or none, the listener's allowedRoutes), their hostnames narrowed to each listener's,
// and the certificates of its HTTPS listeners.
import type { GatewayCertificate, GatewaySnapshot, RouteEntry, UpstreamSnapshot } from '../../api/protocol.js';
import type { GatewayConfig, GatewayListenerConfig } from '../../config/check-gateways.js';
import type { ControlConfig } from '../sources/mesh-config.js';
import { backendTarget, compileRoutes, routeNamespace, type RouteContext } from './routes.js';

/** The Gateway a gateway proxy serves: the one its service key names (`name`, or `name.namespace`). */
export function gatewayOf(config: ControlConfig, service: string): GatewayConfig | undefined {
  return config.gateways?.find((g) => (g.namespace === 'default' ? g.name : `${g.name}.${g.namespace}`) === service);
}

/** Indexes of the routes attached to `listener` of `gateway`. */
function attachedTo(config: ControlConfig, gateway: GatewayConfig, listener: GatewayListenerConfig): number[] {
  const out: number[] = [];
  if (listener.protocol === 'TLS') return out; // TLSRoutes only (attached at load: listener.passthrough)
  config.routes.forEach(({ resource }, i) => {
    if (resource.kind === 'TCPRoute') return;
    const ns = routeNamespace(resource);
    if (listener.from === 'Same' && ns !== gateway.namespace) return;
    if (listener.kinds !== undefined && !listener.kinds.includes(resource.kind ?? 'HTTPRoute')) return;
    const refs = resource.spec.parentRefs as readonly { kind?: string; name: string; namespace?: string; sectionName?: string; port?: number }[];
    const hit = refs.some(
      (r) =>
        r.kind === 'Gateway' &&
        r.name === gateway.name &&
        (r.namespace ?? ns) === gateway.namespace &&
        (r.sectionName === undefined || r.sectionName === listener.name) &&
        (r.port === undefined || r.port === listener.port),
    );
    if (hit) out.push(i);
  });
  return out;
}

/** A route entry that takes every request of its hostname: path prefix `/`, nothing else. */
function catchAll(e: RouteEntry): boolean {
  const m = e.match;
  return (
    (m.path === undefined || (m.path.type === 'PathPrefix' && m.path.value === '/')) &&
    m.method === undefined &&
    m.headers === undefined &&
    m.queryParams === undefined
  );
}

/**
 * A gateway route's entries with the routes of the Services they send to folded in, so
 * that traffic from the edge meets a Service's own HTTPRoutes (a canary's weights, say)
 * as traffic from a sidecar does: Linkerd's ingress behaves so, its proxy resolving the
 * Service's routes. An entry that sends everything (one backend, the whole Service, no
 * filter, timeout or retry of its own) becomes the Service's table, hostname kept; an
 * entry that matches more narrowly takes the backends of a Service whose table is one
 * catch-all rule (a weight split). Any other combination stays as written (to the whole
 * Service): composing two match sets is not done.
 */
function withServiceRoutes(entries: readonly RouteEntry[], serviceRoutes: (backend: string) => readonly RouteEntry[] | undefined): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const e of entries) {
    const only = e.backends.length === 1 ? e.backends[0] : undefined;
    const table = only !== undefined && only.invalid === undefined && only.filters === undefined ? serviceRoutes(only.backend) : undefined;
    if (table === undefined || table.length === 0) {
      out.push(e);
      continue;
    }
    const plain = e.filters === undefined && e.timeouts === undefined && e.retry === undefined && e.fault === undefined;
    if (plain && catchAll(e)) {
      for (const t of table) out.push({ ...t, ...(e.hostname !== undefined ? { hostname: e.hostname } : {}) });
    } else if (table.length === 1 && catchAll(table[0]!)) {
      out.push({ ...e, backends: table[0]!.backends });
    } else {
      out.push(e);
    }
  }
  return out;
}

/**
 * The gateway snapshot and the route tables (upstreams) it refers to. `serviceRoutes`
 * gives the routes of a backend that is a whole mesh Service with routes of its own.
 */
export function compileGateway(
  config: ControlConfig,
  gateway: GatewayConfig,
  ctx: RouteContext,
  backendsOf: (routes: readonly RouteEntry[]) => UpstreamSnapshot['backends'],
  serviceRoutes: (backend: string) => readonly RouteEntry[] | undefined = () => undefined,
): { gateway: GatewaySnapshot; upstreams: Record<string, UpstreamSnapshot> } {
  const byPort = new Map<number, GatewayListenerConfig[]>();
  for (const l of gateway.listeners) byPort.set(l.port, [...(byPort.get(l.port) ?? []), l]);
  const upstreams: Record<string, UpstreamSnapshot> = {};
  const ports: GatewaySnapshot['ports'] = [];
  for (const [port, listeners] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const key = `${gateway.namespace}/${gateway.name}/${port}`;
    if (listeners[0]!.protocol === 'TLS') {
      const routes = sortByHostname(listeners.flatMap((l) => passthroughEntries(l, ctx)));
      upstreams[key] = { service: key, protocol: 'tcp', explicitRoutes: true, routes, backends: backendsOf(routes) };
      ports.push({ port, protocol: 'TLS', listeners: listeners.map((l) => l.name), upstream: key });
      continue;
    }
    // Each listener's routes, narrowed to its hostname; the table is sorted as one, most specific hostname first.
    const entries: RouteEntry[] = [];
    for (const l of listeners) {
      const attached = compileRoutes(key, config.routes, 'http', config.policies, {
        ...ctx,
        attached: attachedTo(config, gateway, l),
        ...(l.hostname ? { listenerHostname: l.hostname } : {}),
      });
      entries.push(...withServiceRoutes(attached, serviceRoutes));
    }
    const routes = sortByHostname(entries);
    upstreams[key] = { service: key, protocol: 'http', explicitRoutes: true, routes, backends: backendsOf(routes) };
    const protocol = listeners[0]!.protocol;
    const certificates: GatewayCertificate[] = protocol === 'HTTPS' ? listeners.flatMap((l) => l.certificates) : [];
    ports.push({ port, protocol, listeners: listeners.map((l) => l.name), upstream: key, ...(protocol === 'HTTPS' ? { certificates } : {}) });
  }
  return { gateway: { name: `${gateway.namespace}/${gateway.name}`, ports }, upstreams };
}

/** A TLS listener's TLSRoutes as route entries: one per SNI name, the backends checked as a route's are. */
function passthroughEntries(listener: GatewayListenerConfig, ctx: RouteContext): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const r of listener.passthrough ?? []) {
    const from = { kind: 'TLSRoute', namespace: r.name.slice(0, r.name.indexOf('/')) };
    const backends = r.backends.map((b) => {
      const target = backendTarget(b, from, ctx);
      return { backend: target.key, weight: b.weight, ...(target.invalid !== undefined ? { invalid: target.invalid } : {}) };
    });
    for (const hostname of r.hostnames ?? [undefined]) {
      out.push({ name: `${r.name}/rule/0`, ...(hostname !== undefined ? { hostname } : {}), match: {}, backends });
    }
  }
  return out;
}

/** Exact hostnames first (longest first), then wildcards (longest first), then none; stable otherwise (compileRoutes' order). */
function sortByHostname(entries: RouteEntry[]): RouteEntry[] {
  const rank = (h: string | undefined): number => (h === undefined ? 0 : h.startsWith('*.') ? 1_000 + h.length : 1_000_000 + h.length);
  return entries
    .map((e, i) => ({ e, i }))
    .sort((a, b) => rank(b.e.hostname) - rank(a.e.hostname) || a.i - b.i)
    .map((x) => x.e);
}
