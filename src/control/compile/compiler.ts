// Config + model state → the snapshot of one proxy. A pure function: the same inputs
// give the same snapshot, key for key, so the distributor can tell a real change from a
// recompile that changed nothing by comparing JSON.
import {
  INGRESS_SERVICE,
  type BackendSnapshot,
  type Endpoint,
  type HostPort,
  type ProxyInfo,
  type RouteFilter,
  type Snapshot,
  type UpstreamSnapshot,
} from '../../api/protocol.js';
import type { ControlConfig, ServiceConfig } from '../sources/mesh-config.js';
import type { HealthStatus } from '../model.js';
import { serviceBalancing, serviceFault, serviceRetryBudget, versionBalancing, versionFailover } from './resilience.js';
import { compileRoutes, type BackendCheck } from './routes.js';

/** What the compiler needs to know about an instance. */
export interface RoutableInstance {
  readonly id: string;
  readonly service: string;
  readonly version: string;
  readonly inbound?: HostPort;
  /** Where the instance's app listens (a request may address the instance by it). */
  readonly app?: HostPort;
  readonly status: HealthStatus;
  /** Registered by a proxy that was already serving: routable while its health is still unknown. */
  readonly resumed?: boolean;
}

export interface CompileInput {
  readonly config: ControlConfig;
  readonly instances: readonly RoutableInstance[];
  readonly proxy: ProxyInfo;
}

/** A snapshot before the distributor stamps its version on it. */
export type SnapshotContent = Omit<Snapshot, 'version'>;

/**
 * The services a proxy may call: the upstreams its hello opened listeners for, plus
 * those its service declares in the mesh file. Nothing else, whatever listeners it has:
 * its HTTP proxy listener reaches these and no more (a service that declares no
 * upstreams reaches no service). Names not in the config are left out.
 */
export function upstreamsFor(config: ControlConfig, proxy: ProxyInfo): string[] {
  const declared = proxy.kind === 'sidecar' ? (config.services.find((s) => s.name === proxy.service)?.upstreams ?? []) : [];
  const names = new Set<string>([...proxy.upstreams.map((u) => u.service), ...declared.map((u) => u.service)]);
  const known = new Set(config.services.map((s) => s.name));
  return [...names].filter((n) => known.has(n)).sort();
}

/**
 * Healthy instances take traffic; so does one whose health is not known yet when its
 * proxy resumed after a control-plane restart: it was in service a moment ago, and
 * dropping every endpoint until the first checks pass would fail requests (a control
 * plane that restarts must not cost one request).
 */
function routable(i: RoutableInstance): boolean {
  return i.status === 'healthy' || (i.status === 'unknown' && i.resumed === true);
}

function endpointsOf(instances: readonly RoutableInstance[], service: string, version?: string): Endpoint[] {
  return instances
    .filter((i) => i.service === service && routable(i) && i.inbound && (version === undefined || i.version === version))
    .map((i) => ({
      id: i.id,
      host: i.inbound!.host,
      port: i.inbound!.port,
      version: i.version,
      ...(i.app ? { app: { host: i.app.host, port: i.app.port } } : {}),
    }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Every version of a service: those the config names and those instances registered with. */
function versionsOf(service: ServiceConfig, instances: readonly RoutableInstance[]): string[] {
  const names = new Set(service.versions.map((v) => v.name));
  for (const i of instances) if (i.service === service.name) names.add(i.version);
  return [...names].sort();
}

/**
 * Finds the service (and version) a backend name stands for: `<service>` or
 * `<service>-<version>`; an exact service name wins over a version reading.
 */
function resolveBackend(config: ControlConfig, instances: readonly RoutableInstance[], name: string): BackendSnapshot | undefined {
  const exact = config.services.find((s) => s.name === name);
  if (exact) return { name, endpoints: endpointsOf(instances, exact.name) };
  for (const s of config.services) {
    if (!name.startsWith(`${s.name}-`)) continue;
    const version = name.slice(s.name.length + 1);
    if (versionsOf(s, instances).includes(version)) return { name, endpoints: endpointsOf(instances, s.name, version) };
  }
  return undefined;
}

/** Backends a RequestMirror sends copies to: they need endpoints in the snapshot too. */
function mirrorsOf(filters: readonly RouteFilter[] | undefined): string[] {
  return (filters ?? []).flatMap((f) => (f.type === 'RequestMirror' ? [f.backend] : []));
}

/**
 * A backendRef naming no Service of the mesh (nor `<service>-<version>` of one) is invalid,
 * not an error of the whole route (Gateway API: BackendNotFound). Only Services count
 * here; kinds and groups other than a core Service are refused by validation.
 */
function backendExists(config: ControlConfig, instances: readonly RoutableInstance[]): BackendCheck {
  return (ref) => {
    if (resolveBackend(config, instances, ref.name) !== undefined) return undefined;
    return {
      reason: 'BackendNotFound',
      message: `no Service "${ref.name}" in the mesh, nor <service>-<version> of one; add the service, or remove the backendRef`,
    };
  };
}

function compileUpstream(config: ControlConfig, instances: readonly RoutableInstance[], service: ServiceConfig): UpstreamSnapshot {
  const routes = compileRoutes(service.name, config.routes, service.protocol, config.policies, backendExists(config, instances));
  const backends: Record<string, BackendSnapshot> = {};
  const add = (b: BackendSnapshot): void => {
    backends[b.name] = b;
  };
  add({ name: service.name, endpoints: endpointsOf(instances, service.name) });
  for (const v of versionsOf(service, instances)) {
    const name = `${service.name}-${v}`;
    if (name in backends) continue;
    const balancing = versionBalancing(service.name, v, config.policies);
    // A version whose every instance is ejected or refusing fails over to the service's other versions.
    const b: BackendSnapshot = { name, endpoints: endpointsOf(instances, service.name, v) };
    const failover = versionFailover(service.name, v, config.policies);
    if (failover !== undefined) b.failover = failover;
    if (balancing) b.balancing = balancing;
    add(b);
  }
  // Routes may send traffic to another service (GAMMA); invalid backendRefs stay out of
  // `backends` and in the route, marked, so the proxy answers their share 500 invalid-backend.
  const referenced = [
    ...new Set(
      routes.flatMap((r) => [
        ...r.backends.flatMap((b) => (b.invalid === undefined ? [b.backend] : [])),
        ...mirrorsOf(r.filters),
        ...r.backends.flatMap((b) => mirrorsOf(b.filters)),
      ]),
    ),
  ].sort();
  for (const name of referenced) {
    if (name in backends) continue;
    const resolved = resolveBackend(config, instances, name);
    if (resolved) add(resolved);
  }
  const sorted: Record<string, BackendSnapshot> = {};
  for (const name of Object.keys(backends).sort()) sorted[name] = backends[name]!;
  const out: UpstreamSnapshot = { service: service.name, protocol: service.protocol, routes, backends: sorted };
  const fault = serviceFault(service.name, config.policies);
  if (fault) out.fault = fault;
  const budget = serviceRetryBudget(service.name, config.policies);
  if (budget) out.retryBudget = budget;
  const balancing = serviceBalancing(service.name, config.policies);
  if (balancing) out.balancing = balancing;
  if (service.upgrades !== undefined) out.upgrades = [...service.upgrades];
  return out;
}

/** Compiles the snapshot content of one proxy: only the upstreams it may call. */
export function compileSnapshot(input: CompileInput): SnapshotContent {
  const { config, instances, proxy } = input;
  const upstreams: Record<string, UpstreamSnapshot> = {};
  for (const name of upstreamsFor(config, proxy)) {
    const service = config.services.find((s) => s.name === name)!;
    upstreams[name] = compileUpstream(config, instances, service);
  }
  const own = proxy.kind === 'sidecar' ? config.services.find((s) => s.name === proxy.service) : undefined;
  const out: SnapshotContent = {
    service: proxy.service,
    inboundProtocol: own?.protocol ?? 'http',
    upstreams,
    meshServices: [...config.services.map((s) => s.name), INGRESS_SERVICE].sort(),
  };
  if (config.proxyLimits !== undefined) out.limits = config.proxyLimits;
  if (own?.upgrades !== undefined) out.inboundUpgrades = [...own.upgrades];
  return out;
}
