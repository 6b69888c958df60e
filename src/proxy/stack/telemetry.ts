// The telemetry layer: the outermost of every stack, so it sees every outcome, errors
// included, and records each exchange once, when it ends (metrics and an access-log
// line), and each tunnel when it opens and closes.
import type { AccessLog } from '../../telemetry/access-log.js';
import { grpcStatusLabel, type Direction, type ProxyMetrics } from '../../telemetry/metrics.js';
import type { Exchange, Tunnel } from './exchange.js';
import { UNKNOWN_SOURCE } from '../identity.js';
import { endpointKey } from '../balancer/balancer.js';
import type { Layer } from './layer.js';
import type { TapHub } from '../tap/tap-hub.js';

export interface TelemetryOptions {
  direction: Direction;
  /** This proxy's service (the source outbound, the destination inbound). */
  service: string;
  version: string;
  metrics: ProxyMetrics;
  accessLog: AccessLog;
  /** The proxy's tap point (tap/tap-hub.ts); absent: none (tests that build a stack alone). */
  tap?: TapHub;
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
  const tap = o.tap;
  // The labels of the exchange being observed, filled in for each: observeHttp reads them
  // and keeps none (a labels object per request was a tenth of this layer's garbage).
  const labels = { direction: o.direction, source: '', destination: '', destinationVersion: '', route: '' };
  const observe = (ex: Exchange): void => {
    const seconds = (performance.now() - ex.startedAt) / 1000;
    const source = ex.source || UNKNOWN_SOURCE;
    const destination = outbound ? ex.service || 'unknown' : o.service;
    const version = outbound ? ex.endpoint?.version || 'unknown' : o.version;
    const route = outbound ? (ex.route?.name ?? '') : 'inbound';
    const status = ex.status || 0;
    if (ex.errorToken === 'timeout' || ex.errorToken === 'request-timeout') {
      o.metrics.timedOut(destination, route, ex.errorToken === 'timeout' ? 'attempt' : 'request');
    }
    labels.source = source;
    labels.destination = destination;
    labels.destinationVersion = version;
    labels.route = route;
    o.metrics.observeHttp(labels, status, seconds, ex.grpcStatus, ex.trace?.traceId);
    if (ex.tunnel !== undefined) watchTunnel(o, ex, ex.tunnel, destination, version, route);
    // The tap point: one field read per exchange while nobody taps this proxy.
    if (tap?.active === true) tap.publish(o.direction, ex, source, destination, route, status, seconds);
    if (!o.accessLog.enabled) return;
    // The request's own fields (method, path) are bounded and, for the path, redacted
    // by the log (access-log.ts); JSON escapes any control character.
    // An allowed request's note is for its trace span; the log names only what authorization refused, audited or would refuse.
    const authz = ex.authz?.result === 'allowed' ? undefined : ex.authz;
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
      // From the snapshot's policies (authz/engine.ts), never from the request.
      authz_policy: authz?.policy,
      authz_action: authz?.action,
      authz_result: authz?.result,
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
