// The contract between the control plane and its proxies: what a proxy says when it
// connects, and the snapshot it is sent. Both sides import these types; nothing else
// crosses the wire.
//
// Transport: the proxy sends `GET /v1/stream` to the control plane's admin port with
// `Connection: Upgrade`, `Upgrade: trellis-stream` (and `Authorization: Bearer <token>`
// when a join token is set). The control plane answers `101 Switching Protocols`; from
// then on both sides write newline-delimited JSON messages on the raw socket.

export type Protocol = 'http' | 'tcp';

export interface HostPort {
  host: string;
  port: number;
}

/** One upstream listener a sidecar opened: the app connects to `listen` to reach `service`. */
export interface UpstreamListener {
  service: string;
  listen: HostPort;
}

/** What a proxy tells the control plane about itself. */
export interface ProxyInfo {
  /** Unique per proxy process, e.g. `backend-v1-0`. */
  id: string;
  /** The mesh service this proxy serves (for a gateway, its own name). */
  service: string;
  /** The version of the instance (`default` when the service has none). */
  version: string;
  /** `sidecar` sits beside one instance; `gateway` has no app and only outbound listeners. */
  kind: 'sidecar' | 'gateway';
  /** Where the app listens (sidecars only). */
  app?: HostPort;
  /** The inbound listener other sidecars connect to (sidecars only). */
  inbound?: HostPort;
  /** The proxy's admin server (`/metrics`, `/config`, `/ready`). */
  admin: HostPort;
  /** One local port per upstream (Consul Connect style). */
  upstreams: UpstreamListener[];
  /** HTTP proxy listener: the Host header names the service. */
  httpProxy?: HostPort;
  pid: number;
}

/** Proxy → control plane. */
export type ProxyMessage =
  | { type: 'hello'; proxy: ProxyInfo }
  | { type: 'ack'; version: number }
  | { type: 'nack'; version: number; error: string }
  | { type: 'ping' };

/** Control plane → proxy. */
export type ControlMessage =
  | { type: 'snapshot'; version: number; snapshot: Snapshot }
  | { type: 'error'; code: string; message: string }
  | { type: 'pong' };

/** A match on the request; all present parts must match (AND). */
export interface RouteMatch {
  path?: { type: 'Exact' | 'PathPrefix'; value: string };
  method?: string;
  headers?: { name: string; type: 'Exact' | 'RegularExpression'; value: string }[];
}

export interface WeightedBackend {
  /** A key of {@link UpstreamSnapshot.backends}. */
  backend: string;
  weight: number;
}

/**
 * One HTTPRoute rule with one of its matches, already placed in Gateway API
 * precedence order by the compiler: the proxy takes the first entry that matches.
 */
export interface RouteEntry {
  /** `<namespace>/<route name>/rule/<index>`; the `route` label in metrics. */
  name: string;
  match: RouteMatch;
  backends: WeightedBackend[];
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
}

export interface BackendSnapshot {
  /** `<service>` (every version) or `<service>-<version>`. */
  name: string;
  /** Healthy endpoints only. */
  endpoints: Endpoint[];
}

export interface UpstreamSnapshot {
  service: string;
  protocol: Protocol;
  /** Precedence-ordered; empty means "every request goes to backend `<service>`". */
  routes: RouteEntry[];
  backends: Record<string, BackendSnapshot>;
}

/** Everything one proxy needs, and nothing more. */
export interface Snapshot {
  version: number;
  /** The proxy's own service and how its inbound listener speaks. */
  service: string;
  inboundProtocol: Protocol;
  /** The services this proxy may call, keyed by service name. */
  upstreams: Record<string, UpstreamSnapshot>;
}
