// What the proxy shows of itself to the rest of Trellis (its metrics, its admin
// server, `trellis status`): the views and the fixed label sets. Both sides import
// them from here, so neither owns the other's contract.

/** Why an outlier detector ejected an endpoint. */
export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-failure' | 'success-rate' | 'failure-percentage';

/** Which listener a connection came in on (a metric label). */
export type ListenerKind = 'inbound' | 'outbound' | 'http-proxy';

/**
 * Why a connection or stream was ended (a metric label, from this fixed set; never from
 * an error's message):
 * - `accept`: setting up the connection threw (the listener callback, protocol detection);
 * - `http1`: handling an HTTP/1.1 connection's bytes or requests threw;
 * - `h2-session`: setting up an HTTP/2 session threw;
 * - `h2-stream`: handling one HTTP/2 stream threw (that stream is reset; the session lives on);
 * - `h2-protocol`: the client broke HTTP/2 (a connection error from nghttp2, or its GOAWAY with an error);
 * - `tcp`: the TCP proxy threw while connecting a client.
 */
export type ConnectionErrorReason = 'accept' | 'http1' | 'h2-session' | 'h2-stream' | 'h2-protocol' | 'tcp';

/**
 * A request or stream refused by a limit (a metric label):
 * - `h2-streams`: an HTTP/2 stream refused before it reached the proxy's code, by
 *   SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM) or node's hard caps (see h2/server-stream.ts);
 * - `h2-header-list`: an HTTP/2 request whose header list is over h2MaxHeaderListBytes (answered 431).
 */
export type LimitRefusal = 'h2-streams' | 'h2-header-list';

/** One endpoint of one backend, as the admin server shows it. */
export interface EndpointView {
  readonly service: string;
  readonly backend: string;
  readonly id: string;
  readonly address: string;
  readonly version: string;
  readonly balancer: string;
  /** Requests in flight (load-aware balancers only). */
  readonly pending: number | undefined;
  /** The round-trip estimate, ms (PeakEWMA only). */
  readonly ewmaMs: number | undefined;
  readonly ejected: boolean;
  readonly reason: EjectionReason | undefined;
  readonly ejectedForMs: number;
  /** Times ejected since the sidecar started watching it. */
  readonly ejections: number;
}

/** Ejections of one version's endpoints for one reason, as metrics show them. */
export interface EjectionCountView {
  readonly service: string;
  readonly version: string;
  readonly reason: EjectionReason;
  readonly count: number;
}

/** Requests one backend of a destination sent to its failover backend. */
export interface FailoverView {
  readonly service: string;
  readonly backend: string;
  readonly to: string;
  readonly count: number;
}

/** One destination's circuit breaker, as the admin server shows it. */
export interface BreakerView {
  readonly service: string;
  /** A limit is reached now: new requests (or retries) overflow. */
  readonly open: boolean;
  readonly connections: number;
  /** Requests waiting for a connection. */
  readonly pending: number;
  readonly requests: number;
  readonly retries: number;
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
  readonly pendingOverflows: number;
  readonly requestOverflows: number;
  readonly retryOverflows: number;
}
