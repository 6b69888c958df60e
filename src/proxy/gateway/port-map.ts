// A Gateway's ports are the ones its listeners declare; a gateway told to open some of
// them elsewhere (`--gateway-port 8443=127.0.0.1:50443`: `trellis up --free-ports`, a port
// already taken) must also send clients there. A RequestRedirect to a mapped port (the
// HTTP → HTTPS redirect names the HTTPS listener's port) is rewritten to the port
// actually opened, once per snapshot, so the request path is unchanged.
import type { RouteEntry, RouteFilter, Snapshot } from '../../api/protocol.js';

function mapFilters(filters: RouteFilter[] | undefined, ports: ReadonlyMap<number, number>): RouteFilter[] | undefined {
  if (filters === undefined) return undefined;
  return filters.map((f) => {
    if (f.type !== 'RequestRedirect' || f.port === undefined) return f;
    const to = ports.get(f.port);
    return to === undefined || to === 0 ? f : { ...f, port: to };
  });
}

function mapEntry(e: RouteEntry, ports: ReadonlyMap<number, number>): RouteEntry {
  if (e.filters === undefined) return e;
  return { ...e, filters: mapFilters(e.filters, ports) ?? [] };
}

/** `s` with the redirects of its Gateway ports' route tables sent to the ports actually opened; `s` itself when nothing maps. */
export function withMappedRedirects(s: Snapshot, ports: ReadonlyMap<number, number>): Snapshot {
  const gateway = s.gateway;
  if (ports.size === 0 || typeof gateway !== 'object' || gateway === null || !Array.isArray(gateway.ports) || typeof s.upstreams !== 'object') return s;
  const upstreams = { ...s.upstreams };
  for (const p of gateway.ports) {
    const u = typeof p === 'object' && p !== null ? upstreams[p.upstream] : undefined;
    if (u === undefined || !Array.isArray(u.routes)) continue;
    upstreams[p.upstream] = { ...u, routes: u.routes.map((e) => mapEntry(e, ports)) };
  }
  return { ...s, upstreams };
}
