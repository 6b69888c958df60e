// What the control plane's admin API answers, as the CLI (`trellis status`, `route
// weights`, `canary`) and any other client read it: the views and the types they
// carry. The control plane builds them (control/admin/); clients only import them here.
import type { HostPort } from './protocol.js';

export type HealthStatus = 'unknown' | 'healthy' | 'unhealthy';

/** A config problem as the loader reports it. */
export interface ConfigProblem {
  readonly file: string;
  readonly path: string;
  readonly message: string;
  readonly line?: number;
  readonly column?: number;
}

/** The largest weight the HTTPRoute schema allows (and the weights API takes). */
export const MAX_WEIGHT = 1_000_000;

/** Weight per version name. */
export type Weights = Record<string, number>;

/** One rule that carries a service's split, and its weights. */
export interface SplitRule {
  file: string;
  /** `<namespace>/<name>` of the HTTPRoute. */
  route: string;
  /** Index of the rule in `spec.rules`. */
  rule: number;
  /** Weight per version (versions the rule does not name are left out). */
  weights: Weights;
  /** Weight of backendRefs naming the whole service (every version, by instance). */
  unversioned: number;
}

export interface HealthView {
  status: HealthStatus;
  since: string | null;
  lastCheck: string | null;
  lastError: string | null;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
}

export interface InstanceView {
  id: string;
  service: string;
  version: string;
  app: HostPort | null;
  inbound: HostPort | null;
  admin: HostPort;
  pid: number;
  registeredAt: string | null;
  health: HealthView;
}

export interface ServiceView {
  /** The service's key: `name`, or `name.namespace` outside default (src/api/names.ts); what the CLI and API paths take. */
  name: string;
  /** Its namespace, when not `default`. */
  namespace?: string;
  protocol: string;
  public: { port?: number } | null;
  upstreams: { service: string; port?: number }[];
  versions: { name: string; labels: Record<string, string>; replicas: number }[];
  instances: InstanceView[];
}

export interface ProxyView {
  id: string;
  service: string;
  version: string;
  kind: 'sidecar' | 'gateway';
  /** The proxy's admin server (`/metrics`, `/config`, `/ready`). */
  admin: { host: string; port: number };
  connected: boolean;
  connectedAt: string | null;
  disconnectedAt: string | null;
  sentVersion: number | null;
  ackedVersion: number | null;
  lastNack: { version: number; error: string; at: string | null } | null;
}

export interface ConfigView {
  files: string[];
  loadedAt: string | null;
  services: string[];
  routes: string[];
  /** Resilience policies in force, as `<kind> <namespace>/<name>`. */
  policies: string[];
  /** Present when the latest reload failed; the config above is still in force. */
  reloadFailed: { at: string | null; problems: (ConfigProblem & { text: string })[] } | null;
  /** Present when the config in force is the last good one from the state folder, not the files (they do not load). */
  restoredFrom: { file: string; savedAt: string | null } | null;
}

/** `GET /v1/services/<name>/weights`. */
export interface WeightsView {
  service: string;
  /** The service's versions, in mesh file order. */
  versions: string[];
  /** The split in force (the first rule that carries it); null when no rule splits the service. */
  weights: Weights | null;
  /** Every rule that carries the split. */
  rules: SplitRule[];
  /** What no split amounts to (every instance in turn): each version's replica count. */
  byInstances: Weights;
}

/** A proxy that calls the service, and the snapshot version that carries the change. */
export interface CallerVersion {
  id: string;
  service: string;
  kind: 'sidecar' | 'gateway';
  /** The version to wait for (ACK of it or a later one). */
  version: number;
}

/** The answer to `PUT /v1/services/<name>/weights`. */
export interface WeightsChange {
  service: string;
  before: Weights | null;
  after: Weights;
  /** False when the files already said this: nothing was written. */
  changed: boolean;
  /** The rules edited (with their weights before), or the route file created. */
  rules: SplitRule[];
  created: string | null;
  /** Every connected proxy that calls the service. */
  callers: CallerVersion[];
  /** False when the distributor had not sent the change to every caller within the wait. */
  sent: boolean;
}

/**
 * One target group of `GET /v1/prometheus/targets`, in Prometheus's HTTP service
 * discovery format (`http_sd_configs`): the targets' `host:port` and their labels.
 */
export interface PrometheusTargetGroup {
  targets: string[];
  labels: {
    __metrics_path__: string;
    service: string;
    version: string;
    instance_id: string;
    kind: 'sidecar' | 'gateway';
  };
}

/** A security kind `trellis control --kubernetes` has never listed, and the likely cause. */
export interface KubernetesUnlistedKind {
  /** One of AuthorizationPolicy, PeerAuthentication, RequestAuthentication. */
  kind: string;
  /** `rbac` (403), `crd-missing` (404), `error` (another failure), `pending` (no answer yet). */
  cause: 'rbac' | 'crd-missing' | 'error' | 'pending';
  statusCode?: number;
  message?: string;
}

/** `GET /v1/kubernetes`: whether the control plane reads the Kubernetes API, and the security kinds it could not list (proxies are refused meanwhile). */
export interface KubernetesView {
  enabled: boolean;
  unlisted: KubernetesUnlistedKind[];
}
