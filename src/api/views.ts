// What the proxy shows of itself to the rest of Trellis (its metrics, its admin
// server, `trellis status`): the views and the fixed label sets. Both sides import
// them from here, so neither owns the other's contract.
import type { MtlsMode } from './protocol.js';

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

/**
 * One finished exchange as a proxy's tap streams it (`GET /tap` on its admin server,
 * one JSON object a line; `trellis tap`). Request-derived values are bounded by the
 * proxy (method 32 characters, authority 255, path as the access log keeps it: query
 * values redacted unless the log keeps them, 1 KiB); a reader still strips control
 * characters before printing them (src/cli/printable.ts).
 */
export interface TapEvent {
  readonly kind: 'request';
  /** When the exchange ended (ISO 8601). */
  readonly ts: string;
  readonly proxy: string;
  readonly direction: 'inbound' | 'outbound';
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  /** 0: no response. */
  readonly status: number;
  /** The call's grpc-status (bounded as the metric label); absent when not gRPC. */
  readonly grpcStatus?: string;
  readonly latencyMs: number;
  /** The calling service as the identity layer names it (`unknown` when it can't). */
  readonly caller: string;
  /** Inbound over mutual TLS: the SPIFFE ID of the caller's verified certificate. */
  readonly peer?: string;
  readonly destination: string;
  /** The matched rule (`inbound` for an inbound exchange, '' when none matched). */
  readonly route: string;
  /** The endpoint that answered, `host:port`. */
  readonly endpoint?: string;
  /** Response bytes sent to the client. */
  readonly bytes: number;
  /** The error-table token the proxy answered with, when it did. */
  readonly error?: string;
  readonly attempts: number;
}

/** A tap's own notice in its stream: events it dropped (its reader was behind), or why it ends. */
export type TapNotice =
  | { readonly kind: 'dropped'; readonly count: number }
  | { readonly kind: 'end'; readonly reason: 'max-events' | 'max-duration' | 'slow-reader' | 'closing' };

/** One route of a proxy's snapshot as `trellis explain` shows it: matched, or the first condition that failed. */
export interface ExplainRouteView {
  readonly name: string;
  /** `matched`, `no-match` (`reason` says which condition), or `not-tried` (an earlier route matched). */
  readonly result: 'matched' | 'no-match' | 'not-tried';
  /** The condition that failed: `method`, `hostname`, `path`, `header <name>`, `query <name>`. */
  readonly condition?: string;
  /** What the condition wants and what the request has. */
  readonly reason?: string;
}

/** What a sidecar would do with a request (`POST /explain` on its admin server; `trellis explain`). */
export interface ExplainView {
  readonly proxy: string;
  readonly snapshotVersion: number | null;
  readonly request: { readonly method: string; readonly authority: string; readonly path: string };
  /** The destination the Host names (its key), or why there is none. */
  readonly destination: string | undefined;
  /** The error the proxy would answer before any route is tried (unknown service, no config...). */
  readonly error?: { readonly token: string; readonly message: string };
  readonly routes: readonly ExplainRouteView[];
  /** The matched rule's policies, as the snapshot holds them. */
  readonly matched?: {
    readonly name: string;
    readonly backends: readonly { readonly name: string; readonly weight: number; readonly invalid?: string }[];
    readonly filters: readonly unknown[];
    readonly timeouts?: unknown;
    readonly retry?: unknown;
    readonly fault?: unknown;
  };
  /** The candidate endpoints of the matched rule's backends, as this proxy's balancers see them now. */
  readonly endpoints: readonly EndpointView[];
  readonly breakers: readonly BreakerView[];
  /** The calling sidecar's own SPIFFE ID (what the destination's policies see as the caller); null before its certificate. */
  readonly caller?: string | null;
  /**
   * What the destination's inbound sidecar would decide of this request from this caller
   * (its `POST /explain/inbound`): `trellis explain` asks it and fills this in; a
   * sidecar's own /explain answers null (the caller's sidecar holds none of the
   * destination's policies).
   */
  readonly authorization: AuthorizationExplainView | null;
}

/** What a service's inbound sidecar would decide of a request from a caller (`POST /explain/inbound`, src/proxy/authz/explain.ts). */
export interface AuthorizationExplainView {
  /** The destination's sidecar that judged it. */
  readonly proxy: string;
  /** The caller's SPIFFE ID; null: a caller with no certificate (plaintext to a PERMISSIVE port). */
  readonly caller: string | null;
  /** The port the policies see (a multi-port service's port; else the app's). */
  readonly port: number;
  /** The inbound listener's PeerAuthentication mode on that port. */
  readonly mtls: MtlsMode;
  /** Whether any AuthorizationPolicy applies to the service (false: everything is allowed). */
  readonly policies: boolean;
  /** What is enforced. */
  readonly decision: 'allow' | 'deny';
  /** deny: the DENY policy that matched, or the ALLOW policies none of which did; allow: the ALLOW policy that matched. */
  readonly policy?: string;
  readonly action?: 'ALLOW' | 'DENY';
  readonly reason: string;
  /** A dryRun policy that would refuse it (logged and counted, let through). */
  readonly dryRun?: { readonly policy: string; readonly action: 'ALLOW' | 'DENY' };
  /** AUDIT policies that match. */
  readonly audited: readonly string[];
  /**
   * RequestAuthentication, when the service has rules: no token, the verified end user
   * (`iss/sub`), or why the token is refused (the sidecar answers 401 before authorization).
   */
  readonly authentication?:
    | { readonly result: 'no-token' }
    | { readonly result: 'verified'; readonly principal: string }
    | { readonly result: 'refused'; readonly reason: string; readonly description: string };
}

/**
 * The fields an access-log line may carry (a Mesh's `spec.accessLog.fields`, a proxy's
 * `--access-log-fields`): a request line has the first ones, a tunnel's or TCP
 * connection's line its own. `ts` is always written (`trellis logs` orders lines by it).
 */
export const ACCESS_LOG_FIELDS = [
  'ts',
  'direction',
  'source',
  'destination',
  'version',
  'route',
  'method',
  'path',
  'status',
  'grpc_status',
  'duration_ms',
  'bytes_sent',
  'bytes_received',
  'upstream',
  'attempts',
  'error',
  'tunnel',
  'protocol',
] as const;

export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number];
