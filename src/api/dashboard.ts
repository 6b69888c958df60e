// The JSON the dashboard's page reads from the control plane (`/dashboard/api/*`), one
// shape per view. The page is plain JavaScript (dashboard/), so this file is its
// contract in writing: the control plane builds these, the page reads them.
import type { ConfigView, ProxyView, ServiceView, WeightsView } from './admin.js';
import type { BreakerView, EndpointView } from './views.js';

/** Rate, success and latency over the stats window. */
export interface Golden {
  /** Requests per second. */
  readonly rps: number;
  /** Share of requests that did not fail (0..1); null with no requests. */
  readonly successRate: number | null;
  /** Estimated from the histograms' buckets as Prometheus' histogram_quantile does; null with no requests. */
  readonly p99Ms: number | null;
  /** Requests in the window. */
  readonly requests: number;
  /** Requests counted since the control plane began reading the proxies for the dashboard. */
  readonly total: number;
}

/** A caller → callee edge, as the caller's sidecar (or the ingress) measured it. */
export interface EdgeStats extends Golden {
  readonly source: string;
  readonly destination: string;
  /** TCP connections opened per second (TCP services). */
  readonly connectionsPerS: number;
  /** Bytes per second both ways, counted when connections close (TCP services). */
  readonly bytesPerS: number;
}

/** One point of a service's chart: seconds since the epoch, then rps, success (0..1 or null), p99 ms (or null). */
export type ChartPoint = readonly [number, number, number | null, number | null];

export interface ServiceStats extends Golden {
  /** Oldest first, one point per read of the proxies, bounded. */
  readonly history: readonly ChartPoint[];
}

export interface RouteStats extends Golden {
  readonly destination: string;
  /** The route's name, `<namespace>/<route>/rule/<i>`, from the snapshot (never a raw path). */
  readonly route: string;
}

export interface VersionStats extends Golden {
  readonly service: string;
  readonly version: string;
}

/** Requests the destination's sidecar answered 403 (authorization refused them), by caller, in the window. */
export interface Denials {
  readonly source: string;
  readonly destination: string;
  readonly count: number;
  readonly total: number;
}

/** Requests and connections a service's AuthorizationPolicies refused (`trellis_authz_denials_total`), by policy and protocol. */
export interface AuthzDenials {
  readonly service: string;
  /** `<namespace>/<name>`; a refusal because no ALLOW policy allowed it names the ALLOW policies. */
  readonly policy: string;
  /** `http` or `tcp`. */
  readonly protocol: string;
  /** In the window, and since the dashboard's first read. */
  readonly count: number;
  readonly total: number;
}

/** Requests a service's rate limits refused 429 (`trellis_http_rate_limited_total`), by policy and limit. */
export interface RateLimitRefusals {
  readonly service: string;
  readonly policy: string;
  readonly limit: string;
  readonly count: number;
  readonly total: number;
}

export interface BalancingReport {
  readonly proxy: string;
  readonly endpoints: readonly EndpointView[];
  readonly breakers: readonly BreakerView[];
}

/** `GET /dashboard/api/stats`: what the proxies measured. */
export interface StatsView {
  /** When the proxies were last read (ISO 8601), null before the first read. */
  readonly at: string | null;
  readonly windowS: number;
  /** Proxies read at the last read, and those that did not answer. */
  readonly proxiesRead: number;
  readonly proxiesFailed: readonly string[];
  readonly edges: readonly EdgeStats[];
  /** By service, as its own sidecars measured its inbound requests. */
  readonly services: Readonly<Record<string, ServiceStats>>;
  readonly routes: readonly RouteStats[];
  readonly versions: readonly VersionStats[];
  readonly denials: readonly Denials[];
  readonly authzDenials: readonly AuthzDenials[];
  readonly rateLimited: readonly RateLimitRefusals[];
  readonly balancing: readonly BalancingReport[];
}

/** One canary the control plane runs for the dashboard (src/control/dashboard/canaries.ts). */
export interface CanaryView {
  readonly service: string;
  readonly to: string;
  readonly stable: string;
  readonly steps: readonly number[];
  readonly intervalS: number;
  readonly state: 'running' | 'paused' | 'promoted' | 'rolled-back' | 'stopped' | 'failed';
  /** The step in force, counted from 0; -1 before the first. */
  readonly step: number;
  /** `to`'s percent now. */
  readonly percent: number;
  readonly startedAt: string;
  readonly endedAt: string | null;
  /** What happened, oldest first (the last 50 lines). */
  readonly events: readonly { readonly at: string; readonly text: string }[];
  readonly reason: string | null;
}

/** The weights of one service that has two or more versions, and the acks of its last change from the dashboard. */
export interface ServiceWeights extends WeightsView {
  readonly lastChange: {
    readonly at: string;
    readonly after: Readonly<Record<string, number>>;
    /** Each caller, the snapshot version carrying the change, and whether it has acknowledged it. */
    readonly callers: readonly { readonly id: string; readonly version: number; readonly acked: boolean }[];
  } | null;
}

/** `GET /dashboard/api/mesh`: the model and the configuration. */
export interface MeshView {
  readonly services: readonly ServiceView[];
  readonly proxies: readonly ProxyView[];
  readonly config: ConfigView;
  readonly weights: readonly ServiceWeights[];
  readonly canaries: readonly CanaryView[];
  /** Config resources that are policies, by kind (AuthorizationPolicy, PeerAuthentication, ...). */
  readonly policies: readonly { readonly kind: string; readonly namespace: string; readonly name: string; readonly targets: readonly string[] }[];
}
