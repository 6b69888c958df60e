// The layers that decide where a request goes and record what happened to it:
// telemetry (every outcome, however the exchange ends), upstream (the destination
// service), route (the rule), split (a backend by weight), balance (an endpoint, and
// the attempt's bookkeeping on the way back), and the inbound stack's local app. Their
// order, with why each sits where it does, is written once: stack/stacks.ts.
import type { Endpoint } from '../api/protocol.js';
import type { AccessLog } from '../telemetry/access-log.js';
import { grpcStatusLabel, type Direction, type ProxyMetrics } from '../telemetry/metrics.js';
import type { Exchange, Handler, Tunnel } from './exchange.js';
import { headerValue } from './http1-parser.js';
import { UNKNOWN_SOURCE } from './identity.js';
import { ABANDONED, Attempts, NO_ANSWER } from './attempt.js';
import { QUEUE_WAIT_MS } from './wait-queue.js';
import { endpointKey } from './balancer/balancer.js';
import { matchRoute, pickBackendIndex, type CompiledUpstream, type HashOn } from './router.js';
import type { Layer } from './stack/layer.js';
import { withBackend, withEndpoint, withRoute, withUpstream, type Picked, type Routed, type Split, type Upstreamed } from './stack/decisions.js';

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
    const version = outbound ? ex.endpoint?.version || 'unknown' : o.version;
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
  return (next) => ({
    request: next,
    back(ex, outcome, outer) {
      const r = outer(ex, outcome);
      // Outermost: by now the layers inside have settled, and the status is final.
      if (outcome.kind === 'end') observe(ex);
      return r;
    },
  });
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

/** How many endpoints one request may try when connecting fails. */
const MAX_CONNECT_ATTEMPTS = 3;

/**
 * Picks an endpoint of the backend and opens the attempt on it; on the way back closes
 * the attempt with what became of it (the balancer's load and latency, the outlier
 * detector's health), and sends a request nothing of which reached an app (a refused
 * connect, a peer whose app is unavailable) to another endpoint, up to
 * {@link MAX_CONNECT_ATTEMPTS}. It sits right above the codec: every attempt, retries
 * included, passes it.
 */
export const balance: Layer<Split, Picked<Split>> = (next) => {
  const dispatch = (ex: Split): void => {
    let b = ex.backend;
    const tries = (ex.tries ??= new Attempts());
    // A version with no endpoint left to take the request (ejected, refusing, tried) fails over to the whole service.
    if (b.failover !== undefined && b.balancer.exhausted(tries.tried) && !b.failover.balancer.exhausted(tries.tried)) {
      // Counted: a canary judged on its own requests alone would not see the ones it could not take.
      if (b.failovers !== undefined) b.failovers.count++;
      ex.backend = b = b.failover;
    }
    const br = b.breaker;
    if (br !== undefined && !br.admitRequest()) return ex.fail('TRELLIS_E_OVERFLOW', { service: ex.service, limit: 'maxRequests', max: br.limits.maxRequests });
    const picked = b.balancer.pick(tries.tried, b.hashOn === undefined ? undefined : hashKey(ex, b.hashOn));
    if (picked.type === 'fail') {
      // After failed connects, the connect failure is the cause worth reporting.
      if (tries.connectError !== '' && ex.endpoint !== undefined) return ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(ex.endpoint), reason: tries.connectError });
      // A backend with no endpoint at all: wait (boundedly) for a snapshot that brings one.
      if (b.balancer.endpoints.length === 0 && b.queue !== undefined && b.queue.add(ex, (backend) => { ex.backend = backend; dispatch(ex); }, () => queueExpired(ex))) return;
      return ex.fail(picked.code, { backend: b.name });
    }
    tries.start(b, picked.endpoint);
    next(withEndpoint(ex, picked.endpoint));
  };
  return {
    request: dispatch,
    back(ex, o, outer) {
      const tries = ex.tries;
      const e = ex.endpoint;
      // An exchange that failed in this layer (nothing picked) has no attempt to settle.
      if (tries === undefined || !tries.open || e === undefined) return outer(ex, o);
      switch (o.kind) {
        case 'head':
          tries.end(o.status, o.sentAt);
          // The peer sidecar's app is down and nothing was delivered: another endpoint may take it.
          if (o.appUnavailable && ex.bodyless) {
            // No endpoint left to try: the client hears why, as for a refused connect.
            if (connectAgain(ex, e, tries, 'its app is unavailable')) ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(e), reason: 'its app is unavailable' });
            return false;
          }
          return outer(ex, o);
        case 'refused':
          tries.end(NO_ANSWER, 0);
          return connectAgain(ex, e, tries, String(o.params.reason ?? '')) && outer(ex, o);
        case 'end':
          // Still open: the client went away, or the exchange failed around the attempt.
          tries.end(ABANDONED, ex.link?.sentAt ?? 0);
          return outer(ex, o);
        default:
          tries.end(NO_ANSWER, o.sentAt);
          return outer(ex, o);
      }
    },
  };

  /** True when the failure goes on up (no other endpoint to try); false when another attempt was dispatched. */
  function connectAgain(ex: Split, e: Endpoint, tries: Attempts, reason: string): boolean {
    if (tries.refused(ex.backend, e, reason) >= MAX_CONNECT_ATTEMPTS) return true;
    dispatch(ex);
    return false;
  }
};

function queueExpired(ex: Split): void {
  ex.fail('TRELLIS_E_NO_ENDPOINTS', { backend: `${ex.backend.name} (waited ${QUEUE_WAIT_MS} ms for an endpoint)` });
}

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
export function localApp(app: Endpoint): Layer<Exchange, Picked> {
  return (next) => ({
    request(ex) {
      next(withEndpoint(ex, app));
    },
  });
}
