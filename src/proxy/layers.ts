// The layers of the HTTP pipelines. Outbound (the app calling another service):
//
//   telemetry → identity → upstream → route → ruleFilters → timeouts → fault → retry → split → backendFilters → balance → forward
//
// telemetry is outermost so it sees every outcome, errors included; identity
// (identity.ts) drops what the client claims about itself and names the calling
// service; the upstream layer
// turns the listener (or the Host header) into a service; route picks the rule; the
// rule's filters (src/proxy/filters/) may answer (a redirect) or edit the request
// before any backend is chosen; split picks a backend by weight, whose own filters
// come next; balance picks an endpoint and is where a refused connection comes back
// to for another try. Inbound (another sidecar calling our app)
// is telemetry → identity (the caller, checked against the mesh's services) → local app → forward.
//
// The resilience layers sit between the rule's filters (they read the rule's config,
// and a redirect never needs them) and split:
// timeouts (timeout.ts) comes first so the request deadline covers fault delays and
// every retry; fault (fault.ts) is outside retry, as Envoy's fault filter is before
// its router, so an injected abort reaches the client instead of being retried away;
// retry (retry.ts) wraps split and balance, so each attempt picks its backend and
// endpoint anew (linkerd's retry sits above its distribute layer for the same reason).
import type { Endpoint } from '../api/protocol.js';
import type { AccessLog } from '../telemetry/access-log.js';
import { grpcStatusLabel, type Direction, type ProxyMetrics } from '../telemetry/metrics.js';
import type { Exchange, Layer, Tunnel } from './exchange.js';
import { headerValue } from './http1-parser.js';
import { UNKNOWN_SOURCE } from './identity.js';
import { startAttempt } from './attempt.js';
import { endpointKey } from './balancer/balancer.js';
import type { HashOn } from './balancing.js';
import { matchRoute, pickBackendIndex, type CompiledUpstream } from './router.js';

export { backendFilters, ruleFilters } from './filters/index.js';

export interface TelemetryOptions {
  direction: Direction;
  /** This proxy's service (the source outbound, the destination inbound). */
  service: string;
  version: string;
  metrics: ProxyMetrics;
  accessLog: AccessLog;
}

/**
 * Records metrics and an access-log line for every exchange, however it ends. Every
 * label comes from this proxy's config or snapshot, never from the request as sent:
 * the source from the identity layer (a mesh service or `unknown`), the destination
 * from the upstream layer (a service of the snapshot or `unknown`), the version from
 * the endpoint, the route from the matched rule; statuses are bounded in metrics.ts.
 */
export function telemetry(o: TelemetryOptions): Layer {
  const outbound = o.direction === 'outbound';
  const observe = (ex: Exchange): void => {
    const seconds = (performance.now() - ex.startedAt) / 1000;
    const source = ex.source || UNKNOWN_SOURCE;
    const destination = outbound ? ex.service || 'unknown' : o.service;
    const version = outbound ? ex.destinationVersion || 'unknown' : o.version;
    const route = outbound ? ex.route?.name ?? '' : 'inbound';
    const status = ex.status || 0;
    if (ex.errorToken === 'timeout' || ex.errorToken === 'request-timeout') {
      o.metrics.timedOut(destination, route, ex.errorToken === 'timeout' ? 'attempt' : 'request');
    }
    o.metrics.observeHttp({ direction: o.direction, source, destination, destinationVersion: version, route }, status, seconds, ex.grpcStatus);
    if (ex.tunnel !== undefined) watchTunnel(o, ex, ex.tunnel, destination, version, route);
    if (!o.accessLog.enabled) return;
    // The request's own fields (method, path) are bounded and, for the path, redacted
    // by the log (access-log.ts); JSON escapes any control character.
    o.accessLog.write({
      ts: new Date().toISOString(),
      direction: o.direction,
      source,
      destination,
      version,
      route,
      method: boundedMethod(ex.req.method),
      path: o.accessLog.target(ex.req.target),
      status,
      grpc_status: ex.grpcStatus === '' ? undefined : grpcStatusLabel(ex.grpcStatus),
      duration_ms: Math.round(seconds * 100_000) / 100,
      bytes_sent: ex.responseBytes,
      upstream: ex.endpoint ? endpointKey(ex.endpoint) : undefined,
      attempts: ex.attempts,
      error: ex.errorToken || undefined,
    });
  };
  return (next) => (ex) => {
    ex.observer = observe;
    next(ex);
  };
}

/**
 * A tunnel (an upgrade answered 101): counted as it opens, and counted and logged with
 * its bytes each way and how long it lasted when it closes. What passes through it is
 * not HTTP the proxy reads, so this line is all the access log says of it.
 */
function watchTunnel(o: TelemetryOptions, ex: Exchange, t: Tunnel, destination: string, version: string, route: string): void {
  const source = ex.source;
  o.metrics.tunnelOpened(o.direction, source, destination, t.protocol);
  t.onClose = () => {
    const ms = performance.now() - t.openedAt;
    o.metrics.tunnelClosed(o.direction, source, destination, t.protocol, t.sent, t.received, ms / 1000);
    if (!o.accessLog.enabled) return;
    o.accessLog.write({
      ts: new Date().toISOString(),
      direction: o.direction,
      tunnel: t.protocol,
      source,
      destination,
      version,
      route,
      method: ex.req.method,
      path: ex.req.path,
      upstream: ex.endpoint ? endpointKey(ex.endpoint) : undefined,
      bytes_sent: t.sent,
      bytes_received: t.received,
      duration_ms: Math.round(ms * 100) / 100,
    });
  };
}

/** Methods are tokens of any length in HTTP/1.1; a log line keeps the first 32 characters (the longest registered method is 17). */
function boundedMethod(m: string): string {
  return m.length <= 32 ? m : `${m.slice(0, 32)}…`;
}

/**
 * Resolves the upstream service: fixed for a per-upstream listener, from the Host
 * header (or absolute-form target) for the HTTP proxy listener. `ex.service` (the
 * destination label) is set only to a service of the snapshot: a Host naming anything
 * else is refused and counted as destination `unknown`.
 */
export function upstream(lookup: (service: string) => CompiledUpstream | undefined | null, fixedService?: string): Layer {
  return (next) => (ex) => {
    const service = fixedService ?? hostToService(ex.req.host);
    if (fixedService !== undefined) ex.service = fixedService;
    const up = lookup(service);
    if (up === null) return ex.fail('TRELLIS_E_NO_CONFIG');
    if (up === undefined || up.protocol === 'tcp') return ex.fail('TRELLIS_E_UNKNOWN_SERVICE', { service: boundedName(service) });
    ex.service = up.service;
    ex.upstream = up;
    next(ex);
  };
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

export const route: Layer = (next) => (ex) => {
  const up = ex.upstream!;
  const r = matchRoute(up, ex.req);
  if (r === undefined) return ex.fail('TRELLIS_E_NO_ROUTE', { service: up.service, method: ex.req.method, path: ex.req.path });
  ex.route = r;
  next(ex);
};

export const split: Layer = (next) => (ex) => {
  const r = ex.route!;
  const i = pickBackendIndex(r);
  if (i === -1) return ex.fail('TRELLIS_E_BACKEND_NOT_FOUND', { route: r.name, backend: '(every weight is 0)' });
  const name = r.backends[i]!;
  ex.backendIndex = i;
  const backend = ex.upstream!.backends.get(name);
  if (backend === undefined) return ex.fail('TRELLIS_E_BACKEND_NOT_FOUND', { route: r.name, backend: name });
  ex.backend = backend;
  next(ex);
};

export const balance: Layer = (next) => {
  const dispatch = (ex: Exchange): void => {
    let b = ex.backend!;
    // A version with no endpoint left to take the request (ejected, refusing, tried) fails over to the whole service.
    if (b.failover !== undefined && b.balancer.exhausted(ex.tried) && !b.failover.balancer.exhausted(ex.tried)) {
      // Counted: a canary judged on its own requests alone would not see the ones it could not take.
      if (b.failovers !== undefined) b.failovers.count++;
      ex.backend = b = b.failover;
    }
    const br = b.breaker;
    if (br !== undefined && !br.admitRequest()) return ex.fail('TRELLIS_E_OVERFLOW', { service: ex.service, limit: 'maxRequests', max: br.limits.maxRequests });
    const picked = b.balancer.pick(ex.tried, b.hashOn === undefined ? undefined : hashKey(ex, b.hashOn));
    if (picked.type === 'fail') {
      // After failed connects, the connect failure is the cause worth reporting.
      if (ex.connectError) return ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(ex.endpoint!), reason: ex.connectError });
      // A backend with no endpoint at all: wait (boundedly) for a snapshot that brings one.
      if (b.balancer.endpoints.length === 0 && b.queue !== undefined && b.queue.add(ex, dispatch)) return;
      return ex.fail(picked.code, { backend: b.name });
    }
    ex.endpoint = picked.endpoint;
    startAttempt(ex);
    ex.retryConnect = dispatch;
    next(ex);
  };
  return dispatch;
};

/** A request's affinity key for RingHash and Maglev: a header, a cookie or the client's address. */
function hashKey(ex: Exchange, on: HashOn): string | undefined {
  if ('header' in on) return headerValue(ex.req.lines, on.header);
  if ('cookie' in on) return cookieValue(headerValue(ex.req.lines, 'cookie'), on.cookie);
  return ex.client.socket.remoteAddress;
}

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Inbound: every request goes to the one local app. */
export function localApp(app: Endpoint): Layer {
  return (next) => (ex) => {
    ex.endpoint = app;
    next(ex);
  };
}
