// The control plane's source on Kubernetes: one reflector per watched kind
// (src/k8s/source/reflector.ts) and the pure mapping from what they hold to the mesh's
// services and endpoints. Services → mesh services (ports, appProtocol); EndpointSlices →
// endpoints with health from their conditions (ready → healthy, serving but not ready or
// terminating → draining, neither → unhealthy); the pod behind an endpoint gives its
// version (label `version`, else `app.kubernetes.io/version`, else `default`) and its
// ServiceAccount the SPIFFE identity. The mapping is a function of the stores alone, so
// a view built after broken watches and re-lists equals one built from the same state
// listed directly (the tests compare exactly that).
import { Reflector, type KubeObject, type ListPage, type StartWatch } from '../../k8s/source/reflector.js';
import { WATCHED_KINDS } from '../../k8s/source/kinds.js';
import { appPorts, K8S_POD_PORTS, SIDECAR_NAME, type K8sPod } from '../../k8s/inject.js';

export interface KubePort {
  readonly name: string;
  readonly port: number;
  readonly protocol: string;
  readonly appProtocol?: string;
}

export interface KubeService {
  /** `name.namespace`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly ports: readonly KubePort[];
}

export type EndpointHealth = 'healthy' | 'draining' | 'unhealthy';

export interface KubeEndpoint {
  /** The service's `name.namespace`. */
  readonly service: string;
  readonly address: string;
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  readonly health: EndpointHealth;
  readonly version: string;
  /** spiffe://<trust-domain>/ns/<ns>/sa/<sa>; absent when the pod is not (yet) known. */
  readonly identity?: string;
  readonly pod?: string;
  /**
   * The pod's injected sidecar: the inbound listener in front of each app port (absent:
   * the pod has no sidecar `trellis-proxy`). See {@link sidecarPorts}.
   */
  readonly sidecarPorts?: readonly SidecarPort[];
}

export interface ClusterView {
  readonly services: readonly KubeService[];
  /** Sorted by service then address: one entry per address and service, never two. */
  readonly endpoints: readonly KubeEndpoint[];
}

export interface ClusterState {
  readonly services: readonly KubeObject[];
  readonly endpointSlices: readonly KubeObject[];
  readonly pods: readonly KubeObject[];
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The version of a pod: label `version`, else `app.kubernetes.io/version`, else `default`. */
export function podVersion(pod: KubeObject | undefined): string {
  const labels = rec(rec(pod?.metadata).labels);
  return str(labels.version) ?? str(labels['app.kubernetes.io/version']) ?? 'default';
}

/** An app port of a pod and the sidecar's inbound listener in front of it. */
export interface SidecarPort {
  readonly app: number;
  readonly inbound: number;
}

/**
 * Where a pod's injected sidecar takes each app port's traffic, as src/k8s/inject.ts
 * set it up: the app's TCP container ports in order (appPorts), the i-th behind inbound
 * listener `trellis-in-<i>` (its declared container port), else 15006 + i. Undefined
 * when the pod has no sidecar `trellis-proxy` (a native sidecar is an init container).
 */
export function sidecarPorts(pod: KubeObject | undefined): SidecarPort[] | undefined {
  const spec = rec(pod?.spec);
  const sidecar = [...arr(spec.initContainers), ...arr(spec.containers)].find((c) => str(rec(c).name) === SIDECAR_NAME);
  if (sidecar === undefined) return undefined;
  const declared = new Map<number, number>();
  for (const p of arr(rec(sidecar).ports)) {
    const m = /^trellis-in-(\d{1,3})$/.exec(str(rec(p).name) ?? '');
    const port = Number(rec(p).containerPort);
    if (m && Number.isInteger(port) && port > 0 && port < 65536) declared.set(Number(m[1]), port);
  }
  return appPorts(pod as K8sPod).map((app, i) => ({ app, inbound: declared.get(i) ?? K8S_POD_PORTS.inbound + i }));
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The view of a cluster's state; a function of the objects alone (order does not matter). */
export function clusterView(state: ClusterState, trustDomain: string): ClusterView {
  const services: KubeService[] = [];
  for (const s of state.services) {
    const name = str(s.metadata?.name);
    const namespace = str(s.metadata?.namespace) ?? 'default';
    if (!name) continue;
    const ports = arr(rec(s.spec).ports).map((p) => {
      const port = rec(p);
      const appProtocol = str(port.appProtocol);
      return { name: str(port.name) ?? '', port: Number(port.port) || 0, protocol: str(port.protocol) ?? 'TCP', ...(appProtocol ? { appProtocol } : {}) };
    });
    services.push({ key: `${name}.${namespace}`, name, namespace, ports });
  }
  services.sort((a, b) => a.key.localeCompare(b.key));
  const known = new Set(services.map((s) => s.key));
  const pods = new Map<string, KubeObject>();
  for (const p of state.pods) pods.set(`${str(p.metadata?.namespace) ?? 'default'}/${str(p.metadata?.name) ?? ''}`, p);

  const endpoints = new Map<string, KubeEndpoint>();
  for (const slice of state.endpointSlices) {
    const namespace = str(slice.metadata?.namespace) ?? 'default';
    const serviceName = str(rec(rec(slice.metadata).labels)['kubernetes.io/service-name']);
    if (!serviceName) continue;
    const service = `${serviceName}.${namespace}`;
    if (!known.has(service)) continue;
    const ports = arr(slice.ports)
      .map((p) => ({ name: str(rec(p).name) ?? '', port: Number(rec(p).port) || 0 }))
      .sort((a, b) => a.name.localeCompare(b.name));
    for (const e of arr(slice.endpoints)) {
      const ep = rec(e);
      const c = rec(ep.conditions);
      // Absent conditions mean true for ready and serving (discovery.k8s.io/v1).
      const ready = c.ready !== false;
      const serving = c.serving !== undefined ? c.serving !== false : ready;
      const terminating = c.terminating === true;
      const health: EndpointHealth = ready && !terminating ? 'healthy' : serving ? 'draining' : 'unhealthy';
      const ref = rec(ep.targetRef);
      const podName = str(ref.kind) === 'Pod' ? str(ref.name) : undefined;
      const pod = podName ? pods.get(`${str(ref.namespace) ?? namespace}/${podName}`) : undefined;
      const sa = str(rec(pod?.spec).serviceAccountName) ?? (pod ? 'default' : undefined);
      const sidecar = sidecarPorts(pod);
      for (const address of arr(ep.addresses)) {
        if (typeof address !== 'string') continue;
        const key = `${service}|${address}`;
        const next: KubeEndpoint = {
          service,
          address,
          ports,
          health,
          version: podVersion(pod),
          ...(sa ? { identity: spiffeId(trustDomain, namespace, sa) } : {}),
          ...(podName ? { pod: `${namespace}/${podName}` } : {}),
          ...(sidecar ? { sidecarPorts: sidecar } : {}),
        };
        // One address in two slices (during a slice move): the healthier one wins.
        const prev = endpoints.get(key);
        if (!prev || rank(next.health) < rank(prev.health)) endpoints.set(key, next);
      }
    }
  }
  return {
    services,
    endpoints: [...endpoints.values()].sort((a, b) => (a.service === b.service ? a.address.localeCompare(b.address) : a.service.localeCompare(b.service))),
  };
}

const rank = (h: EndpointHealth): number => (h === 'healthy' ? 0 : h === 'draining' ? 1 : 2);

export interface KubernetesSourceOptions {
  readonly list: ListPage;
  readonly watch: StartWatch;
  readonly trustDomain: string;
  /** Called with the new view after every change once all kinds have listed. */
  readonly onView?: (view: ClusterView) => void;
  readonly log?: (line: string) => void;
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  readonly pageSize?: number;
  /** Only these kinds (names as in WATCHED_KINDS); default: all of them. */
  readonly kinds?: readonly string[];
}

/** The reflectors for Services, EndpointSlices, Pods, Namespaces, ServiceAccounts and the Gateway API kinds, and the view they give. */
export class KubernetesSource {
  readonly reflectors: ReadonlyMap<string, Reflector>;
  readonly #opts: KubernetesSourceOptions;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    const map = new Map<string, Reflector>();
    for (const kind of Object.values(WATCHED_KINDS)) {
      if (opts.kinds && !opts.kinds.includes(kind.kind)) continue;
      map.set(
        kind.kind,
        new Reflector({
          kind,
          list: opts.list,
          watch: opts.watch,
          onChange: () => this.#changed(),
          ...(opts.log ? { log: opts.log } : {}),
          ...(opts.backoffMs ? { backoffMs: opts.backoffMs } : {}),
          ...(opts.pageSize ? { pageSize: opts.pageSize } : {}),
        }),
      );
    }
    this.reflectors = map;
  }

  /** True once every kind has listed once. */
  get synced(): boolean {
    return [...this.reflectors.values()].every((r) => r.synced);
  }

  start(): void {
    for (const r of this.reflectors.values()) r.start();
  }

  stop(): void {
    for (const r of this.reflectors.values()) r.stop();
  }

  view(): ClusterView {
    const objects = (kind: string): KubeObject[] => this.reflectors.get(kind)?.list() ?? [];
    return clusterView({ services: objects('Service'), endpointSlices: objects('EndpointSlice'), pods: objects('Pod') }, this.#opts.trustDomain);
  }

  #changed(): void {
    if (this.synced) this.#opts.onView?.(this.view());
  }
}
