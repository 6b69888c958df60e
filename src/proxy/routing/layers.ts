// The layers that decide where a request goes, logically: upstream (the destination
// service), route (the rule), split (a backend by weight), and the inbound stack's
// local app. Their order, with why each sits where it does, is written once:
// stack/stacks.ts. (Which endpoint: balancer/balance-layer.ts.)
import type { Endpoint } from '../../api/protocol.js';
import type { Exchange } from '../stack/exchange.js';
import type { CompiledUpstream } from './router.js';
import { matchRoute, pickBackendIndex } from './router.js';
import type { Layer } from '../stack/layer.js';
import { withBackend, withEndpoint, withRoute, withUpstream, type Picked, type Routed, type Split, type Upstreamed } from '../stack/decisions.js';

/**
 * Resolves the upstream service: fixed for a per-upstream listener, from the Host
 * header (or absolute-form target) for the HTTP proxy listener. `ex.service` (the
 * destination label) is set only to a service of the snapshot: a Host naming anything
 * else is refused and counted as destination `unknown`.
 */
export function upstream(lookup: (service: string) => CompiledUpstream | undefined | null, fixedService?: string): Layer<Exchange, Upstreamed> {
  return (next) => ({
    request(ex) {
      const service = fixedService ?? hostToService(ex.req.host);
      if (fixedService !== undefined) ex.service = fixedService;
      const up = lookup(service);
      if (up === null) return ex.fail('TRELLIS_E_NO_CONFIG');
      if (up === undefined || up.protocol === 'tcp') return ex.fail('TRELLIS_E_UNKNOWN_SERVICE', { service: boundedName(service) });
      next(withUpstream(ex, up));
    },
  });
}

/** A name from a Host header, as an error message repeats it: at most a DNS label's 63 characters. */
function boundedName(s: string): string {
  return s.length <= 63 ? s : `${s.slice(0, 63)}…`;
}

/** `backend`, `backend:8080`, `backend.default.svc` → `backend`. */
export function hostToService(host: string): string {
  let h = host;
  const colon = h.lastIndexOf(':');
  if (colon !== -1 && !h.endsWith(']')) h = h.slice(0, colon);
  const dot = h.indexOf('.');
  return (dot === -1 ? h : h.slice(0, dot)).toLowerCase();
}

/** Picks the first rule of the destination's routes that matches the request (404 when none). */
export const route: Layer<Upstreamed, Routed> = (next) => ({
  request(ex) {
    const up = ex.upstream;
    const r = matchRoute(up, ex.req);
    if (r === undefined) return ex.fail('TRELLIS_E_NO_ROUTE', { service: up.service, method: ex.req.method, path: ex.req.path });
    next(withRoute(ex, r));
  },
});

/** Picks one of the rule's backends by weight. */
export const split: Layer<Routed, Split> = (next) => ({
  request(ex) {
    const r = ex.route;
    const i = pickBackendIndex(r);
    if (i === -1) return ex.fail('TRELLIS_E_BACKEND_NOT_FOUND', { route: r.name, backend: '(every weight is 0)' });
    const name = r.backends[i]!;
    const backend = ex.upstream.backends.get(name);
    if (backend === undefined) return ex.fail('TRELLIS_E_BACKEND_NOT_FOUND', { route: r.name, backend: name });
    next(withBackend(ex, i, backend));
  },
});

/** Inbound: every request goes to the one local app. */
export function localApp(app: Endpoint): Layer<Exchange, Picked> {
  return (next) => ({
    request(ex) {
      next(withEndpoint(ex, app));
    },
  });
}
