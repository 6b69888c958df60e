// Config + model state → the snapshot of one proxy. A pure function: the same inputs
// give the same snapshot, key for key, so the distributor can tell a real change from a
// recompile that changed nothing by comparing JSON.
import {
  INGRESS_SERVICE,
  type BackendSnapshot,
  type Endpoint,
  type HostPort,
  type InstancePort,
  type ProxyInfo,
  type RouteEntry,
  type RouteFilter,
  type ServicePortSnapshot,
  type Snapshot,
  type UpstreamSnapshot,
} from '../../api/protocol.js';
import { keyOf, type ControlConfig, type ServiceConfig, type ServicePortConfig } from '../sources/mesh-config.js';
import { DEFAULT_CLUSTER_DOMAIN, DEFAULT_NAMESPACE, serviceKey, splitServiceKey } from '../../api/names.js';
import type { HealthStatus } from '../model.js';
import { serviceBalancing, serviceFault, serviceRetryBudget, versionBalancing, versionFailover } from './resilience.js';
import { compileRoutes, type RouteContext } from './routes.js';
import { compileGatewayRateLimits, compileRateLimits } from './rate-limits.js';
import { inboundMtls, peerMtls } from './mtls.js';
import { compileRequestAuthentication } from './request-authentication.js';
import { compileAuthorization, compileGatewayAuthorization } from './authorization.js';
import { compileGateway, gatewayOf } from './gateway.js';
import { compileExternalServices } from './external.js';

/** What the compiler needs to know about an instance. */
export interface RoutableInstance {
  readonly id: string;
  readonly service: string;
  readonly version: string;
  readonly inbound?: HostPort;
  /** Where the instance's app listens (a request may address the instance by it). */
  readonly app?: HostPort;
  /** A multi-port service's instance: each port's app and inbound listener. */
  readonly ports?: readonly InstancePort[];
  readonly status: HealthStatus;
  /** Registered by a proxy that was already serving: routable while its health is still unknown. */
  readonly resumed?: boolean;
}

export interface CompileInput {
  readonly config: ControlConfig;
  readonly instances: readonly RoutableInstance[];
  readonly proxy: ProxyInfo;
  /**
   * Compile only the proxy's own part (its `upstreams` come out empty): the distributor
   * compiles each upstream once per change and shares it among its callers (issue 17).
   */
  readonly baseOnly?: boolean;
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
  const declared = proxy.kind === 'sidecar' ? (serviceByKey(config, proxy.service)?.upstreams ?? []) : [];
  const names = new Set<string>([...proxy.upstreams.map((u) => u.service), ...declared.map((u) => u.service)]);
  const known = new Set(config.services.map(keyOf));
  return [...names].filter((n) => known.has(n)).sort();
}

/** The service whose key (src/api/names.ts) is `key`. */
function serviceByKey(config: ControlConfig, key: string): ServiceConfig | undefined {
  return config.services.find((s) => keyOf(s) === key);
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

/** Which port of a multi-port service endpoints are wanted at; `first` marks its first port. */
interface PortChoice {
  readonly port: number;
  readonly first: boolean;
}

/**
 * Where an instance takes traffic for `at`: its inbound listener (one-port services), or
 * the one in front of that port. An instance whose sidecar reported no ports (one from
 * before the service listed them) is reached at its one inbound listener for the first port only.
 */
function addressAt(i: RoutableInstance, at: PortChoice | undefined): { inbound: HostPort; app?: HostPort } | undefined {
  if (at === undefined || i.ports === undefined)
    return at === undefined || at.first ? i.inbound && { inbound: i.inbound, ...(i.app ? { app: i.app } : {}) } : undefined;
  const p = i.ports.find((x) => x.port === at.port);
  return p && { inbound: p.inbound, app: p.app };
}

export function endpointsOf(instances: readonly RoutableInstance[], service: string, version?: string, at?: PortChoice): Endpoint[] {
  const out: Endpoint[] = [];
  for (const i of instances) {
    if (i.service !== service || !routable(i) || (version !== undefined && i.version !== version)) continue;
    const a = addressAt(i, at);
    if (a === undefined) continue;
    out.push({
      id: i.id,
      host: a.inbound.host,
      port: a.inbound.port,
      version: i.version,
      ...(a.app ? { app: { host: a.app.host, port: a.app.port } } : {}),
    });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * The port of `service` a backend reference lands on: `port` (the backendRef's own, or
 * the port being routed when it names none) if the service has it, else its first.
 */
function portFor(service: ServiceConfig, port: number | undefined): PortChoice | undefined {
  const ports = service.ports;
  if (ports === undefined || ports.length === 0) return undefined;
  const same = port === undefined ? -1 : ports.findIndex((p) => p.port === port);
  const chosen = ports[same === -1 ? 0 : same]!;
  return { port: chosen.port, first: chosen === ports[0] };
}

/** Every version of a service: those the config names and those instances registered with. */
function versionsOf(service: ServiceConfig, instances: readonly RoutableInstance[]): string[] {
  const names = new Set(service.versions.map((v) => v.name));
  const key = keyOf(service);
  for (const i of instances) if (i.service === key) names.add(i.version);
  return [...names].sort();
}

/**
 * What a backend name stands for in a namespace: a service there (`<service>`), or one
 * version of one (`<service>-<version>`). A real service wins the name over a version
 * reading, as two Kubernetes Services named `echo-v1` and `echo` are simply distinct.
 */
function backendTarget(
  config: ControlConfig,
  instances: readonly RoutableInstance[],
  namespace: string,
  name: string,
): { service: ServiceConfig; version?: string } | undefined {
  const inNs = config.services.filter((s) => (s.namespace ?? DEFAULT_NAMESPACE) === namespace);
  const exact = inNs.find((s) => s.name === name);
  if (exact) return { service: exact };
  for (const s of inNs) {
    if (!name.startsWith(`${s.name}-`)) continue;
    const version = name.slice(s.name.length + 1);
    if (versionsOf(s, instances).includes(version)) return { service: s, version };
  }
  return undefined;
}

/**
 * The backend whose key is `key` (`<backend name>[.<namespace>]`), with its endpoints at
 * the port traffic for service port `port` lands on; undefined when it names nothing.
 */
function resolveBackend(config: ControlConfig, instances: readonly RoutableInstance[], key: string, port: number | undefined): BackendSnapshot | undefined {
  // `<key>:<port>`: a backendRef that names another port of a multi-port Service (routes.ts).
  const named = /^(.+):(\d{1,5})$/.exec(key);
  const { name, namespace } = splitServiceKey(named ? named[1]! : key);
  const target = backendTarget(config, instances, namespace, name);
  const at = named ? Number(named[2]) : port;
  if (target === undefined) return undefined;
  const choice = portFor(target.service, at);
  return withMtls({ name: key, endpoints: endpointsOf(instances, keyOf(target.service), target.version, choice) }, config, target.service, choice);
}

/** `b` with how its endpoints are reached (mutual TLS or plaintext: mtls.ts), at the port `at` chose. */
function withMtls(b: BackendSnapshot, config: ControlConfig, service: ServiceConfig, at: PortChoice | undefined): BackendSnapshot {
  const mtls = peerMtls(config, service, at?.port);
  if (mtls !== undefined) b.mtls = mtls;
  return b;
}

/** Backends a RequestMirror sends copies to: they need endpoints in the snapshot too. */
function mirrorsOf(filters: readonly RouteFilter[] | undefined): string[] {
  return (filters ?? []).flatMap((f) => (f.type === 'RequestMirror' ? [f.backend] : []));
}

/**
 * The backends the routes of `service` (at one of its ports, when it lists them) send to:
 * the whole service, each version, and every other service or version a route names,
 * with the endpoints at the port traffic for `at` goes to.
 */
function compileBackends(
  config: ControlConfig,
  instances: readonly RoutableInstance[],
  service: ServiceConfig,
  routes: readonly RouteEntry[],
  at: PortChoice | undefined,
): Record<string, BackendSnapshot> {
  const key = keyOf(service);
  const namespace = service.namespace ?? DEFAULT_NAMESPACE;
  const backends: Record<string, BackendSnapshot> = {};
  const add = (b: BackendSnapshot): void => {
    backends[b.name] = b;
  };
  add(withMtls({ name: key, endpoints: endpointsOf(instances, key, undefined, at) }, config, service, at));
  for (const v of versionsOf(service, instances)) {
    const versionName = `${service.name}-${v}`;
    // A real service of that name wins it (it is resolved below, when a route names it).
    if (config.services.some((s) => s.name === versionName && (s.namespace ?? DEFAULT_NAMESPACE) === namespace)) continue;
    const name = serviceKey(versionName, namespace);
    if (name in backends) continue;
    const balancing = versionBalancing(key, v, config.policies);
    // A version whose every instance is ejected or refusing fails over to the service's other versions.
    const b: BackendSnapshot = { name, endpoints: endpointsOf(instances, key, v, at) };
    const failover = versionFailover(key, v, config.policies);
    if (failover !== undefined) b.failover = failover;
    if (balancing) b.balancing = balancing;
    add(withMtls(b, config, service, at));
  }
  // Routes may send traffic to another service (GAMMA); unresolvable names stay out of
  // `backends` and in the route, so the proxy reports backend-not-found.
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
    const resolved = resolveBackend(config, instances, name, at?.port);
    if (resolved) add(resolved);
  }
  const sorted: Record<string, BackendSnapshot> = {};
  for (const name of Object.keys(backends).sort()) sorted[name] = backends[name]!;
  return sorted;
}

/**
 * One port of a multi-port service: the routes bound to it (or to every port) that apply
 * to the caller's namespace, and backends at it.
 */
function compilePort(
  config: ControlConfig,
  instances: readonly RoutableInstance[],
  service: ServiceConfig,
  ctx: RouteContext,
  p: ServicePortConfig,
  first: boolean,
): ServicePortSnapshot {
  const routes = compileRoutes(keyOf(service), config.routes, p.protocol, config.policies, { ...ctx, port: p.port });
  const backends = compileBackends(config, instances, service, routes, { port: p.port, first });
  return { port: p.port, ...(p.name !== undefined ? { name: p.name } : {}), protocol: p.protocol, routes, backends };
}

function compileUpstream(config: ControlConfig, instances: readonly RoutableInstance[], service: ServiceConfig, caller: string): UpstreamSnapshot {
  const key = keyOf(service);
  // What a backend name stands for, found once per name for this upstream's route tables:
  // each backendRef asks for its Service, its ports and (across namespaces) its grant, per port.
  const targets = new Map<string, ReturnType<typeof backendTarget>>();
  const target = (ns: string, name: string): ReturnType<typeof backendTarget> => {
    const k = `${ns}/${name}`;
    if (!targets.has(k)) targets.set(k, backendTarget(config, instances, ns, name));
    return targets.get(k);
  };
  const ctx: RouteContext = {
    caller,
    grants: config.referenceGrants,
    resolve: (ns, name) => target(ns, name)?.service.name,
    portsOf: (ns, name) => target(ns, name)?.service.ports?.map((p) => p.port),
  };
  // Per port and per caller namespace: a route table is what one caller sees at one port.
  const ports = service.ports?.map((p, i) => compilePort(config, instances, service, ctx, p, i === 0));
  const first = ports?.[0];
  const routes = first?.routes ?? compileRoutes(key, config.routes, service.protocol, config.policies, ctx);
  const backends = first?.backends ?? compileBackends(config, instances, service, routes, undefined);
  const out: UpstreamSnapshot = { service: key, protocol: first?.protocol ?? service.protocol, routes, backends };
  if (ports !== undefined) out.ports = ports;
  const fault = serviceFault(key, config.policies);
  if (fault) out.fault = fault;
  const budget = serviceRetryBudget(key, config.policies);
  if (budget) out.retryBudget = budget;
  const balancing = serviceBalancing(key, config.policies);
  if (balancing) out.balancing = balancing;
  if (service.upgrades !== undefined) out.upgrades = [...service.upgrades];
  return out;
}

/**
 * The namespace a proxy calls from. The caller's namespace decides which routes apply
 * (consumer routes, GEP-1294) and what a bare host name means; a gateway's name carries
 * none, so it is in default.
 */
export function callerNamespace(proxy: ProxyInfo): string {
  return splitServiceKey(proxy.service).namespace;
}

/**
 * The upstream `name` as every caller in namespace `caller` sees it (undefined: no such
 * service): what {@link compileSnapshot} puts under `upstreams[name]`.
 */
export function compileUpstreamFor(config: ControlConfig, instances: readonly RoutableInstance[], name: string, caller: string): UpstreamSnapshot | undefined {
  const service = serviceByKey(config, name);
  return service === undefined ? undefined : compileUpstream(config, instances, service, caller);
}

/** Compiles the snapshot content of one proxy: only the upstreams it may call. */
export function compileSnapshot(input: CompileInput): SnapshotContent {
  const { config, instances, proxy } = input;
  const upstreams: Record<string, UpstreamSnapshot> = {};
  const caller = callerNamespace(proxy);
  for (const name of input.baseOnly === true ? [] : upstreamsFor(config, proxy)) {
    const service = serviceByKey(config, name);
    if (service !== undefined) upstreams[name] = compileUpstream(config, instances, service, caller);
  }
  // ExternalServices: every sidecar's, and the egress gateway's (external.ts).
  const gatewayName = config.egressGateway?.name;
  Object.assign(
    upstreams,
    compileExternalServices(config, proxy, caller, () => (gatewayName === undefined ? [] : endpointsOf(instances, gatewayName))),
  );
  // A gateway proxy named after a Gateway: its ports, and a route table per port among its upstreams.
  const gatewayConfig = proxy.kind === 'gateway' ? gatewayOf(config, proxy.service) : undefined;
  let gateway: Snapshot['gateway'];
  if (gatewayConfig !== undefined) {
    const ctx = { caller, grants: config.referenceGrants, resolve: (ns: string, name: string) => backendTarget(config, instances, ns, name)?.service.name };
    const backendsOf = (routes: readonly RouteEntry[]): Record<string, BackendSnapshot> => {
      const out: Record<string, BackendSnapshot> = {};
      const names = [
        ...new Set(routes.flatMap((r) => [...r.backends.flatMap((b) => (b.invalid === undefined ? [b.backend] : [])), ...mirrorsOf(r.filters)])),
      ].sort();
      for (const name of names) {
        const b = resolveBackend(config, instances, name, undefined);
        if (b) out[name] = b;
      }
      return out;
    };
    // A backend that is a whole Service with routes of its own (parentRef the Service): its
    // table, as the gateway's caller namespace sees it, is folded into the gateway's.
    const serviceRoutes = (backend: string): readonly RouteEntry[] | undefined => {
      const service = serviceByKey(config, backend);
      if (service === undefined || service.protocol === 'tcp') return undefined;
      return compileRoutes(backend, config.routes, service.protocol, config.policies, { ...ctx, portsOf: () => undefined });
    };
    const compiled = compileGateway(config, gatewayConfig, ctx, backendsOf, serviceRoutes);
    Object.assign(upstreams, compiled.upstreams);
    gateway = compiled.gateway;
  }
  const own = proxy.kind === 'sidecar' ? serviceByKey(config, proxy.service) : undefined;
  const out: SnapshotContent = {
    service: proxy.service,
    inboundProtocol: own?.ports?.[0]?.protocol ?? own?.protocol ?? 'http',
    ...(own?.ports !== undefined ? { inboundPorts: own.ports.map((p) => ({ port: p.port, protocol: p.protocol })) } : {}),
    upstreams,
    // Gateway proxies call the mesh as themselves (their Gateway's key), as the ingress does.
    meshServices: [
      ...new Set([
        ...config.services.map(keyOf),
        INGRESS_SERVICE,
        ...(config.gateways ?? []).map((g) => (g.namespace === 'default' ? g.name : `${g.name}.${g.namespace}`)),
      ]),
    ].sort(),
  };
  if (gateway !== undefined) out.gateway = gateway;
  if (config.outboundTrafficPolicy === 'REGISTRY_ONLY') out.outboundTrafficPolicy = 'REGISTRY_ONLY';
  // Absent for default and cluster.local, so snapshots of a mesh without namespaces are as before.
  if (caller !== DEFAULT_NAMESPACE) out.namespace = caller;
  if (config.clusterDomain !== undefined && config.clusterDomain !== DEFAULT_CLUSTER_DOMAIN) out.clusterDomain = config.clusterDomain;
  if (config.proxyLimits !== undefined) out.limits = config.proxyLimits;
  if (config.tracing !== undefined) out.tracing = config.tracing;
  if (own?.upgrades !== undefined) out.inboundUpgrades = [...own.upgrades];
  const rateLimits = own !== undefined ? compileRateLimits(config, proxy.service) : undefined;
  if (rateLimits !== undefined) out.rateLimits = rateLimits;
  if (own !== undefined) out.mtls = inboundMtls(config, own);
  // The inbound side: only the rules of this proxy's own service (a gateway has none yet).
  const authn = own === undefined ? undefined : compileRequestAuthentication(config, proxy.service);
  if (authn !== undefined) out.requestAuthentication = authn;
  // What the proxy's own service lets in; absent when no policy applies (snapshots as before).
  // A Gateway's proxy: the policies that target the Gateway, judged at the edge (gatewayStack).
  const authorization = gatewayConfig !== undefined ? compileGatewayAuthorization(config, gatewayConfig) : compileAuthorization(config, own);
  if (authorization !== undefined) out.authorization = authorization;
  const edgeLimits = gatewayConfig !== undefined ? compileGatewayRateLimits(config, gatewayConfig) : undefined;
  if (edgeLimits !== undefined) out.rateLimits = edgeLimits;
  return out;
}
