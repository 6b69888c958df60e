// The contract between the control plane and its proxies: what a proxy says when it
// connects, and the snapshot it is sent. Both sides import these types; nothing else
// crosses the wire. It lives in src/api/, a neutral folder both sides import, so the
// proxy never imports the control plane (nor the control plane the proxy).
//
// Transport: the proxy sends `GET /v1/stream` to the control plane's admin port with
// `Connection: Upgrade`, `Upgrade: trellis-stream` (and `Authorization: Bearer <token>`
// when a join token is set). The control plane answers `101 Switching Protocols`; from
// then on both sides write newline-delimited JSON messages on the raw socket. The first
// message is the proxy's hello with its bootstrap credential; nothing is sent to a proxy
// whose credential does not name the instance it says it is.

/**
 * The name of the ingress Gateway the local runner serves: the mesh file's Gateway of that
 * name, or the one it derives from public services (src/runner/gateways.ts). It is a
 * caller inbound listeners accept (it is no mesh service: nothing routes to it).
 */
export const INGRESS_SERVICE = 'trellis-ingress';

/**
 * How a service speaks. Its listeners serve HTTP/1.1 and HTTP/2 (h2c) alike for every
 * HTTP value; the value also says which HTTP its app speaks, for the inbound sidecar:
 * 'http1' (HTTP/1.1 only), 'http2' or 'grpc' (HTTP/2 with prior knowledge only), 'http'
 * (probed once per app instance). 'tcp': opaque bytes. 'detect': not declared; each
 * connection's first bytes decide (HTTP/1.1, HTTP/2, else opaque TCP), and the app is probed as for 'http'.
 */
export type Protocol = 'http' | 'http1' | 'http2' | 'grpc' | 'tcp' | 'detect';

export interface HostPort {
  host: string;
  port: number;
}

/** One upstream listener a sidecar opened: the app connects to `listen` to reach `service`. */
export interface UpstreamListener {
  service: string;
  listen: HostPort;
  /** The port of a multi-port service this listener reaches; absent: its first. */
  servicePort?: number;
}

/** One port of a multi-port service at one instance: its app's address, and the sidecar's inbound listener in front of it. */
export interface InstancePort {
  /** The service port (what callers address, `Host: svc:PORT`). */
  port: number;
  app: HostPort;
  inbound: HostPort;
}

/** What a proxy tells the control plane about itself. */
export interface ProxyInfo {
  /** Unique per proxy process, e.g. `backend-v1-0`. */
  id: string;
  /**
   * The key of the mesh service this proxy serves (for a gateway, its own name): `name`,
   * or `name.namespace` outside the default namespace (src/api/names.ts).
   */
  service: string;
  /**
   * The namespace of that service (the key's second part, spelled out for identities such
   * as `spiffe://<td>/ns/<namespace>/sa/<name>`); absent: `default`.
   */
  namespace?: string;
  /** The version of the instance (`default` when the service has none). */
  version: string;
  /** `sidecar` sits beside one instance; `gateway` has no app and only outbound listeners. */
  kind: 'sidecar' | 'gateway';
  /** Where the app listens (sidecars only). */
  app?: HostPort;
  /** The inbound listener other sidecars connect to (sidecars only); a multi-port service's first port's. */
  inbound?: HostPort;
  /** A multi-port service: every port's app and inbound listener, in the service's order (the first is `app`, `inbound`). */
  ports?: InstancePort[];
  /** The proxy's admin server (`/metrics`, `/config`, `/ready`). */
  admin: HostPort;
  /** One local port per upstream (Consul Connect style). */
  upstreams: UpstreamListener[];
  /** HTTP proxy listener: the Host header names the service. */
  httpProxy?: HostPort;
  pid: number;
  /**
   * Present when the proxy already runs on a snapshot from an earlier connection (the
   * control plane restarted, or the link dropped). Its instance was in service, so it
   * stays routable until its first health checks say otherwise; `endpoints` are the
   * instance ids its snapshot routes to, which a restarted control plane waits for
   * before it sends this proxy anything (so it never sends a snapshot that is missing
   * instances only because their proxies have not reconnected yet).
   */
  resumed?: { endpoints: string[] };
}

/**
 * Proxy → control plane. `hello.credential` is the proxy's bootstrap credential
 * (src/security/bootstrap-credential.ts): it is checked and dropped, never kept with the
 * ProxyInfo (which the admin API shows). `csr` asks for a workload certificate: a
 * PKCS#10 request in PEM over a key the proxy made and keeps; `id` pairs the answer.
 */
export type ProxyMessage =
  | { type: 'hello'; proxy: ProxyInfo; credential?: string }
  | { type: 'ack'; version: number }
  | { type: 'nack'; version: number; error: string }
  | { type: 'csr'; id: number; csr: string }
  | { type: 'ping' }
  /**
   * The proxy could not assemble a delta (its `from` is not the version the proxy holds
   * on this stream): the control plane answers with a full snapshot.
   */
  | { type: 'resync'; version?: number }
  | RateDemandMessage;

/**
 * Proxy → control plane, every {@link RATE_REPORT_INTERVAL_MS} while the proxy holds
 * global rate limits: the requests that reached each one since the last report (taken
 * or refused: what callers asked for, not what the quota let through).
 */
export interface RateDemandMessage {
  type: 'rate-demand';
  /** How long the counts were gathered over, in ms. */
  intervalMs: number;
  limits: { id: string; requests: number }[];
}

/** How often a proxy reports its global limits' demand, and the control plane rebalances quotas. */
export const RATE_REPORT_INTERVAL_MS = 1000;

/**
 * Control plane → proxy: this proxy's share of each global rate limit of its service,
 * sent when it joins, when a replica joins or leaves, and after each rebalance. A proxy
 * keeps the last quota it was sent while the control plane is unreachable.
 */
export interface RateQuotaMessage {
  type: 'rate-quota';
  quotas: { id: string; requestsPerSecond: number; burst: number }[];
}

/**
 * A workload certificate the CA signed for a proxy, and the roots to trust. The
 * identity in it comes from the proxy's bootstrap credential, never from its CSR.
 */
export interface IssuedCertificate {
  /** `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`, the certificate's one URI SAN. */
  spiffeId: string;
  /** PEM certificates, the proxy's first, then its issuer and any intermediates (no root). */
  chain: string[];
  /** PEM roots a peer's chain must end at; during a root rotation, old and new. */
  trustBundle: string[];
  /** The certificate's serial, lower-case hex. */
  serial: string;
  /** ISO 8601. */
  notBefore: string;
  notAfter: string;
}

/**
 * Control plane → proxy. `certificate` answers the `csr` of the same id; `csr-refused`
 * says why the CA did not sign (the stream stays up: the proxy retries with backoff);
 * `trust-bundle` is sent to every proxy whenever the CA's roots change (a rotation).
 */
export type ControlMessage =
  | { type: 'snapshot'; version: number; snapshot: Snapshot; resources?: Record<string, number> }
  | SnapshotDelta
  | { type: 'error'; code: string; message: string }
  | { type: 'pong' }
  | { type: 'certificate'; id: number; certificate: IssuedCertificate }
  | { type: 'csr-refused'; id: number; code: string; message: string }
  | { type: 'trust-bundle'; trustBundle: string[] }
  | RateQuotaMessage;

/** A snapshot without its version and upstreams: what a proxy knows about itself (config only). */
export type SnapshotBase = Omit<Snapshot, 'version' | 'upstreams'>;

/**
 * Control plane → proxy: what changed since the message of version `from` on this
 * stream (incremental xDS's per-resource updates; src/api/snapshot-delta.ts assembles
 * it). Each upstream is a resource with its own version (`resources`); an upstream
 * listed is replaced whole, one in `removed` is gone, the others stay as they were;
 * `base`, when present, replaces everything but the upstreams. A stream always starts
 * with a full `snapshot`; a proxy that holds another version than `from` sends `resync`.
 */
export interface SnapshotDelta {
  type: 'delta';
  version: number;
  from: number;
  base?: SnapshotBase;
  upstreams?: Record<string, UpstreamSnapshot>;
  removed?: string[];
  resources?: Record<string, number>;
}

/** A match on the request; all present parts must match (AND). */
export interface RouteMatch {
  /** Matched against the path as received, without the query string. */
  path?: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  method?: string;
  headers?: { name: string; type: 'Exact' | 'RegularExpression'; value: string }[];
  /** Names are case-sensitive; values are compared as sent (not percent-decoded). */
  queryParams?: { name: string; type: 'Exact' | 'RegularExpression'; value: string }[];
}

/** Header edits of a RequestHeaderModifier / ResponseHeaderModifier; names lower case. */
export interface HeaderEditsSpec {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

/** A path change of a redirect or rewrite; ReplacePrefixMatch replaces the entry's PathPrefix. */
export interface PathModifierSpec {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  value: string;
}

/** The statuses a RequestRedirect may answer (Gateway API: 301 and 302 core, 303, 307 and 308 extended). */
export type RedirectStatus = 301 | 302 | 303 | 307 | 308;

/** A Gateway API filter, normalized by the control plane (defaults filled in). */
export type RouteFilter =
  | { type: 'RequestHeaderModifier'; edits: HeaderEditsSpec }
  | { type: 'ResponseHeaderModifier'; edits: HeaderEditsSpec }
  | { type: 'RequestRedirect'; scheme?: 'http' | 'https'; hostname?: string; path?: PathModifierSpec; port?: number; statusCode: RedirectStatus }
  | { type: 'URLRewrite'; hostname?: string; path?: PathModifierSpec }
  /** `percent` may be fractional (from a Gateway API `fraction`). */
  | { type: 'RequestMirror'; backend: string; percent: number };

export interface WeightedBackend {
  /**
   * A key of {@link UpstreamSnapshot.backends}: `<service>` or `<service>-<version>`, with
   * `.<namespace>` outside default (src/api/names.ts).
   */
  backend: string;
  weight: number;
  /** Filters applied only to requests sent to this backend. */
  filters?: RouteFilter[];
  /**
   * Present when the backendRef can take no traffic: the route still works, and the
   * requests its weight would send here are answered 500 invalid-backend (Gateway API
   * HTTPBackendRef). Absent: valid.
   */
  invalid?: InvalidBackend;
}

/**
 * Why a backendRef is invalid, by the Gateway API's ResolvedRefs reasons: `BackendNotFound`
 * (no such Service), `RefNotPermitted` (another namespace's Service, with no ReferenceGrant
 * allowing it), `InvalidKind` (not a kind the mesh routes to).
 */
export type InvalidBackendReason = 'BackendNotFound' | 'RefNotPermitted' | 'InvalidKind';

/** An invalid backendRef's reason, and a message saying what is wrong and what would fix it. */
export interface InvalidBackend {
  reason: InvalidBackendReason;
  message: string;
}

/**
 * One HTTPRoute rule with one of its matches (and one of the route's hostnames),
 * already placed in Gateway API precedence order by the compiler: the proxy takes the
 * first entry that matches.
 */
export interface RouteEntry {
  /** `<namespace>/<route name>/rule/<index>`; the `route` label in metrics. */
  name: string;
  /** `host` or `*.suffix`, matched against the Host header (port ignored); absent: any host. */
  hostname?: string;
  match: RouteMatch;
  /** Filters of the rule, in the order written. */
  filters?: RouteFilter[];
  backends: WeightedBackend[];
  /** The rule's timeouts; absent when it has none. */
  timeouts?: RouteTimeouts;
  /** The rule's retry policy; absent when it retries nothing (beyond refused connects). */
  retry?: RetryConfig;
  /** A FaultInjection policy on the rule or its route; absent when none. */
  fault?: FaultConfig;
}

/** HTTPRoute rule timeouts in ms; an absent (or "0s") one does not apply. */
export interface RouteTimeouts {
  /** The whole exchange, retries and fault delays included. */
  requestMs?: number;
  /** Each attempt: from sending the request to the response head. */
  backendRequestMs?: number;
}

/** A rule's retry stanza (GEP-1731) with the RetryPolicy safety fields and their defaults. */
export interface RetryConfig {
  /** Response statuses that are retried; connection failures and resets always are. */
  codes: number[];
  /** Retries after the first attempt. */
  attempts: number;
  /** Base of the exponential backoff with jitter. */
  backoffMs: number;
  /** Replay POST, PATCH, CONNECT too (RetryPolicy retryNonIdempotent). */
  nonIdempotent: boolean;
  /** Larger request bodies are streamed, not kept, so not retried. */
  maxBodyBytes: number;
}

/** A FaultInjection policy, compiled: percentages are 0-100. */
export interface FaultConfig {
  /** `<namespace>/<name>` of the policy, for the error message. */
  policy: string;
  delay?: { ms: number; percent: number };
  abort?: { httpStatus?: number; grpcStatus?: number; percent: number };
}

/** Linkerd's budget, used when a service has no XBackendTrafficPolicy: 20% + 10/s over 10 s. */
export const DEFAULT_RETRY_BUDGET: RetryBudgetConfig = { percent: 20, windowMs: 10_000, minRetries: 10, minIntervalMs: 1000 };

/** The retry budget of a destination (XBackendTrafficPolicy retryConstraint, or the defaults). */
export interface RetryBudgetConfig {
  /** Retries may be this share of the requests in the window (0-100). */
  percent: number;
  windowMs: number;
  /** Plus this many retries per `minIntervalMs`, however few the requests. */
  minRetries: number;
  minIntervalMs: number;
}

export type BalancerType = 'PeakEWMA' | 'LeastRequest' | 'RoundRobin' | 'Random' | 'RingHash' | 'Maglev';

/** Envoy's outlier detection settings, durations in ms. */
export interface OutlierDetectionConfig {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
  successRateMinimumHosts: number;
  successRateRequestVolume: number;
  successRateStdevFactor: number;
  /** 0 turns the failure-percentage detector off. */
  failurePercentageThreshold: number;
  failurePercentageMinimumHosts: number;
  failurePercentageRequestVolume: number;
}

/** Envoy's defaults. */
export const DEFAULT_OUTLIER_DETECTION: OutlierDetectionConfig = {
  consecutive5xx: 5,
  consecutiveGatewayFailure: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
  successRateMinimumHosts: 5,
  successRateRequestVolume: 100,
  successRateStdevFactor: 1900,
  failurePercentageThreshold: 0,
  failurePercentageMinimumHosts: 5,
  failurePercentageRequestVolume: 50,
};

/** What a service without a BackendPolicy gets. */
export const DEFAULT_BALANCING: BalancingConfig = { policy: '', balancer: 'PeakEWMA', outlierDetection: DEFAULT_OUTLIER_DETECTION, panicThreshold: 50 };

/**
 * How a proxy balances a backend and watches its endpoints (a BackendPolicy, compiled).
 * Absent from a snapshot: the defaults, PeakEWMA with Envoy's outlier detection.
 */
export interface BalancingConfig {
  /** `<namespace>/<name>` of the policy. */
  policy: string;
  balancer: BalancerType;
  /** The affinity key of RingHash and Maglev; absent: requests are spread at random. */
  hashOn?: { header: string } | { cookie: string } | { source: true };
  /** Absent: outlier detection off. Only a Service-wide policy's counts (one detector per service). */
  outlierDetection?: OutlierDetectionConfig;
  /** Below this percentage of usable endpoints, a backend is balanced over all of them (Envoy's panic). */
  panicThreshold: number;
  /** Limits on the destination's concurrent requests and retries; absent: none. Service-wide policy only. */
  circuitBreaker?: CircuitBreakerConfig;
}

/** A BackendPolicy's circuitBreaker, with Envoy's defaults (1024 and, for retries, 3) for the fields left out. */
export interface CircuitBreakerConfig {
  /** Connections open to the service's endpoints. */
  maxConnections: number;
  /** Requests waiting for a connection (beyond maxConnections). */
  maxPendingRequests: number;
  /** Attempts in flight to the service. */
  maxRequests: number;
  /** Retries outstanding to the service. */
  maxRetries: number;
}

export interface Endpoint {
  /** The instance id (the proxy id of its sidecar). */
  id: string;
  /** The instance's inbound sidecar listener. */
  host: string;
  port: number;
  version: string;
  /** Share of the backend's traffic relative to its other endpoints (default 1). */
  weight?: number;
  /**
   * The instance's app, where it listens itself: a request addressed to it (the "pod IP"
   * of a Kubernetes mesh) goes to this instance through the mesh, by its sidecar.
   */
  app?: HostPort;
  /**
   * An ExternalService's endpoint: that service's key. Its connections are its own, apart
   * from another ExternalService's at the same address (their SNI and CA bundle may differ).
   */
  external?: string;
}

export interface BackendSnapshot {
  /** `<service>` (every version) or `<service>-<version>`. */
  name: string;
  /**
   * Present: connections to this backend's endpoints are mutual TLS (its sidecars' mode is
   * STRICT or PERMISSIVE), and the server's certificate must name one of `identities`.
   * Absent: plaintext (the destination's mode is DISABLE, or it has no sidecar).
   */
  mtls?: PeerMtls;
  /** Healthy endpoints only. */
  endpoints: Endpoint[];
  /**
   * The backend that takes this one's requests when none of its endpoints can (all
   * ejected or refusing): for a version, the whole service. Absent: no failover.
   */
  failover?: string;
  /** A BackendPolicy naming this version (sectionName): its balancer and panic threshold. */
  balancing?: BalancingConfig;
  /**
   * An ExternalService's endpoints reached with TLS the proxy originates (the app spoke
   * plain HTTP): the SNI, the name the server's certificate must carry, and the CA bundle
   * (PEM) it must chain to. Absent: plaintext (or `mtls`).
   */
  originateTls?: { sni: string; ca: string };
  /**
   * The SNI of the mutual-TLS connection to these endpoints when they are the egress
   * gateway's and the call is opaque (a TCP, TLS or HTTPS ExternalService): Istio's
   * `outbound_.<port>_._.<service key>`, which tells the gateway where to go. Absent: none.
   */
  tunnelSni?: string;
}

/**
 * One port of a multi-port service, compiled as an upstream of its own (Envoy and Istio
 * give each service port its own cluster): the routes bound to it (parentRefs[].port, or
 * none), its protocol, and backends whose endpoints are the instances' inbound listeners
 * for this port.
 */
export interface ServicePortSnapshot {
  port: number;
  name?: string;
  protocol: Protocol;
  routes: RouteEntry[];
  backends: Record<string, BackendSnapshot>;
}

export interface UpstreamSnapshot {
  service: string;
  protocol: Protocol;
  /**
   * A service with a `ports:` list: every port (callers pick one with `Host: svc:PORT`, no
   * port = 80). `protocol`, `routes` and `backends` above are then its first port's (what a
   * per-upstream listener without a servicePort reaches). Absent: one port, any port in Host.
   */
  ports?: ServicePortSnapshot[];
  /**
   * Precedence-ordered; empty means "every request goes to backend `<service>`". For a
   * tcp service, at most one entry (a TCPRoute): only its backends count.
   */
  routes: RouteEntry[];
  backends: Record<string, BackendSnapshot>;
  /** A FaultInjection that targets the Service: applies to routes without their own. */
  fault?: FaultConfig;
  /** An XBackendTrafficPolicy's budget; absent: the default (20% + 10/s over 10 s). */
  retryBudget?: RetryBudgetConfig;
  /** A BackendPolicy on the Service; absent: the defaults. */
  balancing?: BalancingConfig;
  /** Only the routes take requests: with none matching, 404 (a Gateway's port); absent: no routes means the whole service. */
  explicitRoutes?: boolean;
  /** An ExternalService: the host names (lower case) that reach it through the HTTP proxy listener. Absent: a mesh service. */
  externalHosts?: string[];
  /**
   * A TLS or HTTPS ExternalService: the server names (lower case) a client's TLS hello may
   * ask for; under REGISTRY_ONLY any other (or none) closes the connection. Absent: not checked.
   */
  sniHosts?: string[];
  /**
   * The HTTP/1.1 upgrade protocols (lower case) the service accepts through the mesh
   * (the Mesh service's `upgrades`); absent: {@link DEFAULT_UPGRADES}.
   */
  upgrades?: string[];
}

/**
 * The upgrade protocols a service accepts when its Mesh entry names none: WebSocket, as
 * Istio enables it for every route. h2c is never tunnelled (see src/proxy/routing/upgrade.ts).
 */
export const DEFAULT_UPGRADES: readonly string[] = Object.freeze(['websocket']);

/**
 * How an inbound listener takes connections (PeerAuthentication): `STRICT` mutual TLS
 * only, `PERMISSIVE` mutual TLS or plaintext (told apart by the first byte), `DISABLE`
 * plaintext only.
 */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** The proxy's own inbound listeners' modes: `mode` for every port, or the port's own in `ports`. */
export interface InboundMtls {
  mode: MtlsMode;
  /** Service ports whose mode differs from `mode` (a port-level PeerAuthentication). */
  ports?: { port: number; mode: MtlsMode }[];
}

/** What a caller needs to open mutual TLS to a backend: the SPIFFE IDs its sidecars' certificates may name. */
export interface PeerMtls {
  identities: string[];
}

/** Everything one proxy needs, and nothing more. */
export interface Snapshot {
  version: number;
  /** The proxy's own service (its key) and how its inbound listener speaks. */
  service: string;
  /**
   * The proxy's own namespace: where a bare host name (`svc`) resolves, and which
   * consumer routes applied when this snapshot was compiled. Absent: `default`.
   */
  namespace?: string;
  /** The domain of `svc.ns.svc.<domain>` host names; absent: `cluster.local`. */
  clusterDomain?: string;
  inboundProtocol: Protocol;
  /** A multi-port service: how each port's inbound listener speaks (`inboundProtocol` is the first's). */
  inboundPorts?: { port: number; protocol: Protocol }[];
  /** The upgrade protocols the proxy's own service accepts on its inbound listener; absent: {@link DEFAULT_UPGRADES}. */
  inboundUpgrades?: string[];
  /**
   * The PeerAuthentication of the proxy's own inbound listeners. Absent (a control plane
   * from before mTLS, or a snapshot a test builds): PERMISSIVE, plaintext as before and
   * mutual TLS from callers told to originate it.
   */
  mtls?: InboundMtls;
  /** The services this proxy may call, keyed by service key (`name`, or `name.namespace` outside default). */
  upstreams: Record<string, UpstreamSnapshot>;
  /**
   * The callers an inbound listener accepts (src/proxy/identity.ts), sorted: every
   * service of the mesh, and the local runner's ingress ({@link INGRESS_SERVICE}).
   * Absent (a control plane from before it was added): no caller is accepted, and every
   * inbound request counts as from `unknown`.
   */
  meshServices?: string[];
  /** Limits the mesh sets for its proxies' listeners; fields absent keep the proxy's defaults. */
  limits?: ProxyLimitsSnapshot;
  /** The RateLimitPolicies on the proxy's own service (its inbound side); absent: none. */
  rateLimits?: RateLimitsSnapshot;
  /** Distributed tracing (the Mesh's `spec.telemetry.tracing`); absent: the proxy traces nothing. */
  tracing?: TracingSnapshot;
  /**
   * The RequestAuthentication rules that apply to this proxy's own service (its inbound
   * side); absent: none, and no request's token is looked at.
   */
  requestAuthentication?: RequestAuthenticationSnapshot;
  /**
   * The AuthorizationPolicies that apply to this proxy's own service (its namespace's
   * and those targeting it), judged by its inbound listeners (src/proxy/authz/).
   * Absent: none applies, and every caller is allowed.
   */
  authorization?: AuthorizationSnapshot;
  /**
   * A gateway proxy serving a Gateway API `Gateway` (its ProxyInfo.service names it): the
   * ports to open and what each serves. Absent: no Gateway (a sidecar, or a gateway whose
   * Gateway resource is gone: it closes its Gateway listeners).
   */
  gateway?: GatewaySnapshot;
  /**
   * The Mesh's `outboundTrafficPolicy.mode` when REGISTRY_ONLY: a call to a host that is
   * neither a service of the snapshot nor an ExternalService is refused 403 egress-refused
   * (TCP: closed), counted and logged. Absent: ALLOW_ANY (503 unknown-service, as before).
   */
  outboundTrafficPolicy?: 'REGISTRY_ONLY';
}

/**
 * A Gateway, compiled for its proxy: one entry per port. Listeners sharing a port share
 * one route table (their routes' hostnames narrowed to each listener's hostname), so the
 * Host header picks among them as it picks among routes; on an HTTPS port the TLS SNI
 * picks the certificate.
 */
export interface GatewaySnapshot {
  /** `<namespace>/<name>` of the Gateway. */
  name: string;
  ports: GatewayPortSnapshot[];
}

export interface GatewayPortSnapshot {
  port: number;
  /**
   * `TLS`: a Passthrough port. Its table's entries are TLSRoutes, one per SNI name
   * (`hostname`; absent: any), most specific first; a connection goes to a backend of the
   * first whose hostname takes its SNI, bytes untouched.
   */
  protocol: 'HTTP' | 'HTTPS' | 'TLS';
  /** The listener names on this port (for views and logs). */
  listeners: string[];
  /**
   * The key in {@link Snapshot.upstreams} of this port's route table (`<gateway>/<port>`:
   * never a service key, which has no `/`). Its `explicitRoutes` is set: a request no
   * route takes is 404, not sent to a default backend.
   */
  upstream: string;
  /** HTTPS: the certificates of its listeners, from their certificateRefs. */
  certificates?: GatewayCertificate[];
}

/** A listener's certificate and key (PEM), as the Gateway's certificateRefs name them. */
export interface GatewayCertificate {
  /** `<namespace>/<secret>`: what refers to it in logs. */
  name: string;
  /** The listener's hostname it serves (`*.example.com` or exact); absent: any (the listener has none). */
  hostname?: string;
  /** PEM: the certificate, then its intermediates. */
  chain: string;
  /** PEM private key. */
  key: string;
}

/** One limit of a RateLimitPolicy, compiled for the sidecars of one service. */
export interface RateLimitSnapshot {
  /** `<namespace>/<policy>/<limit>`: unique in the mesh; names its quotas on the stream. */
  id: string;
  /** `<namespace>/<policy>`: the `policy` metric label. */
  policy: string;
  /** The limit's name: the `limit` metric label and the policy item of the RateLimit headers. */
  name: string;
  /** Route entry names (`RouteEntry.name`) the limit covers; absent: every request to the service. */
  routes?: string[];
  /** Tokens added per `intervalMs`, and the bucket's size. */
  requests: number;
  intervalMs: number;
  burst: number;
  /** One bucket per calling workload, or per value of a header (lower case); absent: one bucket. */
  key?: { source: true } | { header: string };
  /** A keyed limit: buckets kept at most (least recently used dropped). */
  maxKeys?: number;
  /** The rate is for all replicas together: this proxy holds the quota the control plane sends. */
  global?: boolean;
  /** Allowed responses carry the RateLimit headers too. */
  responseHeaders?: boolean;
}

export interface RateLimitsSnapshot {
  limits: RateLimitSnapshot[];
  /**
   * When a limit covers routes: the service's own route table (its producer routes, matches
   * only, in precedence order), which the inbound side matches to know a request's rule.
   */
  routes?: RouteEntry[];
}

/**
 * How a proxy traces (src/telemetry/tracing/): the head sampling rate for requests that
 * bring no sampling decision, and where spans go, in OTLP/HTTP.
 */
export interface TracingSnapshot {
  /** 0 to 1: the share of new traces sampled at this proxy. Failed requests are exported whatever it is. */
  samplingRate: number;
  /**
   * Whether a Gateway's listeners keep the sampling decision of a request from outside
   * (traceparent's sampled flag, B3's); absent or false: the edge samples at its own
   * rate, keeping the caller's trace id. Sidecars always keep their mesh callers' decision.
   */
  trustIncomingSampling?: boolean;
  /** The collector's OTLP/HTTP traces URL; absent: the control plane's own receiver (`<control>/v1/traces`). */
  endpoint?: string;
  /** Spans a proxy queues at most; more are dropped and counted. */
  maxQueueSpans?: number;
  /** Spans per export request. */
  batchSpans?: number;
  flushIntervalMs?: number;
  exportTimeoutMs?: number;
}

/** The JWT rules of one service, compiled: every RequestAuthentication of its namespace that applies to it, merged (as Istio merges them). */
export interface RequestAuthenticationSnapshot {
  rules: JwtRuleSnapshot[];
}

/** Where a rule reads a token: a header (its value after `prefix`), or a query parameter. */
export type JwtLocation = { header: string; prefix: string } | { param: string };

/** One jwtRule, with its defaults filled in and durations in ms. */
export interface JwtRuleSnapshot {
  /** `<namespace>/<name>` of its RequestAuthentication. */
  policy: string;
  issuer: string;
  /** Absent or empty: the `aud` claim is not checked (Envoy's behaviour for an empty list). */
  audiences?: string[];
  /**
   * The key set, as JSON text: inline or a jwksFile's content, resolved by the control
   * plane. Exactly one of `jwks` and `jwksUri`.
   */
  jwks?: string;
  /** A URL the proxy fetches the key set from itself, off the request path (docs/contracts.md says why). */
  jwksUri?: string;
  /** Where tokens are read, in order; the default is `Authorization: Bearer <token>`. */
  from: JwtLocation[];
  forwardOriginalToken: boolean;
  outputClaimToHeaders?: { header: string; claim: string }[];
  /** The signature algorithms accepted; never `none`. */
  algorithms: string[];
  clockSkewMs: number;
  maxTokenBytes: number;
  /** jwksUri only: how often it is fetched again, and how long its last keys outlive failed fetches. */
  jwksRefreshMs?: number;
  jwksMaxStaleMs?: number;
}

/** The AuthorizationPolicies of one service, in the form its sidecar compiles (src/control/compile/authorization.ts). */
export interface AuthorizationSnapshot {
  /** The mesh's trust domain (principals are `<trustDomain>/ns/<namespace>/sa/<name>`). */
  trustDomain: string;
  /** In `<namespace>/<name>` order. */
  policies: AuthorizationPolicySnapshot[];
}

/** One AuthorizationPolicy, values as written but principals without `spiffe://` and ports as numbers. */
export interface AuthorizationPolicySnapshot {
  /** `<namespace>/<name>`: the `policy` label of its denials and the access log's `authz_policy`. */
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  /** Evaluated, logged and counted as if enforced, but refuses nothing. */
  dryRun?: boolean;
  /** Empty: the policy matches nothing (an ALLOW policy without rules allows nothing). */
  rules: AuthorizationRuleSnapshot[];
}

/** A rule matches when one of `from` (absent: any), one of `to` (absent: any) and every `when` match. */
export interface AuthorizationRuleSnapshot {
  from?: AuthorizationSourceSnapshot[];
  to?: AuthorizationOperationSnapshot[];
  when?: AuthorizationConditionSnapshot[];
}

/** Fields are ANDed; each list matches when one of its values does (a `not` list when none does). */
export interface AuthorizationSourceSnapshot {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
}

export interface AuthorizationOperationSnapshot {
  hosts?: string[];
  notHosts?: string[];
  ports?: number[];
  notPorts?: number[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** `key` as src/api/authorization.ts parses it; at least one of `values` and `notValues`. */
export interface AuthorizationConditionSnapshot {
  key: string;
  values?: string[];
  notValues?: string[];
}

/** The mesh's overrides of a proxy's limits (src/proxy/listeners/limits.ts), in milliseconds and bytes. */
export interface ProxyLimitsSnapshot {
  maxRequestHeadBytes?: number;
  requestHeaderTimeoutMs?: number;
  idleTimeoutMs?: number;
  h2MaxConcurrentStreams?: number;
  h2MaxHeaderListBytes?: number;
  maxConnectionsPerListener?: number;
  appProbeTimeoutMs?: number;
  tcpConnectTimeoutMs?: number;
  tcpIdleTimeoutMs?: number;
  maxConcurrentScrapes?: number;
  scrapeTimeoutMs?: number;
}
