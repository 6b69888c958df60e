// The layers that decide where a request goes, logically: upstream (the destination
// service), route (the rule), split (a backend by weight), and the inbound stack's
// local app. Their order, with why each sits where it does, is written once:
// stack/stacks.ts. (Which endpoint: balancer/balance-layer.ts.)
import { isIP } from 'node:net';
import type { Endpoint } from '../../api/protocol.js';
import type { Exchange } from '../stack/exchange.js';
import type { CompiledUpstream } from './router.js';
import { matchRoute, pickBackendIndex } from './router.js';
import type { Layer } from '../stack/layer.js';
import type { EgressPolicy } from '../egress/egress-policy.js';
import { withBackend, withEndpoint, withRoute, withUpstream, type Picked, type Routed, type Split, type Upstreamed } from '../stack/decisions.js';

/**
 * Resolves the upstream service: fixed for a per-upstream listener, from the Host
 * header (or absolute-form target) for the HTTP proxy listener. `ex.service` (the
 * destination label) is set only to a service of the snapshot: a Host naming anything
 * else is refused and counted as destination `unknown`.
 */
export function upstream(
  lookup: (service: string) => CompiledUpstream | undefined | null,
  fixedService?: string,
  lookupAddress: (address: string) => AddressedInstance | undefined | null = () => undefined,
  fixedPort?: number,
  egress?: EgressPolicy,
): Layer<Exchange, Upstreamed> {
  return (next) => ({
    request(ex) {
      if (fixedService === undefined) {
        const address = addressOf(ex.req.host);
        if (address !== undefined) {
          // Addressed to an instance, not a service: that instance or nothing (never an open relay).
          const found = lookupAddress(address);
          if (found === null) return ex.fail('TRELLIS_E_NO_CONFIG');
          if (found === undefined) return refuse(ex, egress, 'TRELLIS_E_UNKNOWN_ADDRESS', { address: boundedName(address) });
          ex.pinned = found.endpoint;
          return next(withUpstream(ex, found.upstream));
        }
      }
      const service = fixedService ?? hostToService(ex.req.host);
      if (fixedService !== undefined) ex.service = fixedService;
      const found = lookup(service);
      if (found === null) return ex.fail('TRELLIS_E_NO_CONFIG');
      if (found === undefined) return refuse(ex, egress, 'TRELLIS_E_UNKNOWN_SERVICE', { service: boundedName(service) });
      // A multi-port service: the port the listener names, or the Host's (80 when it names
      // none); a listener without one reaches the first port, which `found` already is.
      let up: CompiledUpstream | undefined = found;
      if (found.ports !== undefined && (fixedService === undefined || fixedPort !== undefined)) {
        const port = fixedService === undefined ? hostPort(ex.req.host) : (fixedPort ?? -1);
        up = found.ports.get(port);
        if (up === undefined) {
          return ex.fail('TRELLIS_E_UNKNOWN_PORT', { service: found.service, port: port === -1 ? '(not a port number)' : port, ports: found.portList });
        }
      }
      if (up.protocol === 'tcp') return ex.fail('TRELLIS_E_UNKNOWN_SERVICE', { service: boundedName(service) });
      next(withUpstream(ex, up));
    },
  });
}

/**
 * A host the snapshot does not know: under REGISTRY_ONLY refused 403 egress-refused,
 * counted and logged (egress-policy.ts); otherwise answered as before (`code`).
 */
function refuse(
  ex: Exchange,
  egress: EgressPolicy | undefined,
  code: 'TRELLIS_E_UNKNOWN_ADDRESS' | 'TRELLIS_E_UNKNOWN_SERVICE',
  params: Record<string, string>,
): void {
  if (egress?.registryOnly !== true || (code === 'TRELLIS_E_UNKNOWN_SERVICE' && egress.meshServices.has(hostToService(ex.req.host))))
    return ex.fail(code, params);
  egress.refused('http', ex.req.host);
  ex.fail('TRELLIS_E_EGRESS_REFUSED', { host: boundedName(ex.req.host) });
}

/**
 * The port a Host header names (`svc:8080` → 8080; `[::1]:8080` too): 80 when it names
 * none, as a client writes no port for 80; -1 when what follows the colon is no port
 * number. Reads characters, allocates nothing.
 */
export function hostPort(host: string): number {
  const colon = host.lastIndexOf(':');
  if (colon === -1 || host.charCodeAt(host.length - 1) === 93 /* ] */ || host.indexOf(']', colon) !== -1) return 80;
  const digits = host.length - colon - 1;
  if (digits < 1 || digits > 5) return -1;
  let port = 0;
  for (let i = colon + 1; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    port = port * 10 + (c - 48);
  }
  return port >= 1 && port <= 65535 ? port : -1;
}

/** An instance of the snapshot, found by an address it listens at (its app's or its sidecar's). */
export interface AddressedInstance {
  readonly upstream: CompiledUpstream;
  readonly endpoint: Endpoint;
}

/**
 * `host:port` when a Host header names an IP address rather than a name (`127.0.0.1:8080`,
 * `[::1]:8080`; port 80 when absent), else undefined.
 */
export function addressOf(host: string): string | undefined {
  let h = host;
  let port = '80';
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    if (close === -1) return undefined;
    if (h.charCodeAt(close + 1) === 58 /* : */) port = h.slice(close + 2);
    h = h.slice(1, close);
    return isIP(h) === 6 && /^\d{1,5}$/.test(port) ? `[${h.toLowerCase()}]:${Number(port)}` : undefined;
  }
  const colon = h.lastIndexOf(':');
  if (colon !== -1) {
    port = h.slice(colon + 1);
    h = h.slice(0, colon);
  }
  return isIP(h) === 4 && /^\d{1,5}$/.test(port) ? `${h}:${Number(port)}` : undefined;
}

/** A name from a Host header, as an error message repeats it: at most a DNS label's 63 characters. */
function boundedName(s: string): string {
  return s.length <= 63 ? s : `${s.slice(0, 63)}…`;
}

/**
 * The host name a Host header names, as the sidecar's host table keys it: without its
 * port or a trailing dot, lower case (`Backend.NS:8080` → `backend.ns`). Which service
 * that is depends on the caller's namespace (`svc` is in the caller's own), so the
 * sidecar's table, built from the snapshot (src/api/names.ts), resolves it.
 */
export function hostToService(host: string): string {
  let h = host;
  const colon = h.lastIndexOf(':');
  if (colon !== -1 && !h.endsWith(']')) h = h.slice(0, colon);
  if (h.charCodeAt(h.length - 1) === 46 /* . */) h = h.slice(0, -1);
  return h.toLowerCase();
}

/** Picks the first rule of the destination's routes that matches the request (404 when none). */
export const route: Layer<Upstreamed, Routed> = (next) => ({
  request(ex) {
    const up = ex.upstream;
    // A request addressed to one instance is not one the service's routes take (MeshFrontend).
    if (ex.pinned !== undefined) return next(withRoute(ex, up.direct));
    const r = matchRoute(up, ex.req);
    if (r === undefined) return ex.fail('TRELLIS_E_NO_ROUTE', { service: up.service, method: ex.req.method, path: ex.req.path });
    next(withRoute(ex, r));
  },
});

/**
 * Picks one of the rule's backends by weight. The share of an invalid backendRef (a
 * Service that does not exist, or that a ReferenceGrant does not permit) is answered
 * 500 invalid-backend, the other backends keep theirs (Gateway API HTTPBackendRef).
 */
export const split: Layer<Routed, Split> = (next) => ({
  request(ex) {
    const r = ex.route;
    const i = pickBackendIndex(r);
    if (i === -1) return ex.fail('TRELLIS_E_BACKEND_NOT_FOUND', { route: r.name, backend: '(every weight is 0)' });
    const name = r.backends[i]!;
    const invalid = r.invalid?.[i];
    if (invalid !== undefined) return ex.fail('TRELLIS_E_INVALID_BACKEND', { route: r.name, backend: name, reason: invalid.reason, detail: invalid.message });
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
