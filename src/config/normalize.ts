// Turns the services of a valid Mesh resource into the one shape every consumer
// (runner, control plane, compiler) works with: defaults filled, versions spelled
// out, upstreams as objects, durations in milliseconds, cwd absolute. Consumers then
// never re-apply a default or parse a duration, and cannot disagree about them.
import type { ProxyLimitsSnapshot, TracingSnapshot } from '../api/protocol.js';
import { serviceKey } from '../api/names.js';
import { resolve } from 'node:path';
import { parseDurationMs } from './duration.js';
import {
  defaultProtocol,
  MESH_DEFAULTS,
  type HealthCheck,
  type MeshResource,
  type MeshService,
  type ProxyLimitsSpec,
  type TracingSpec,
  type Upstream,
} from './schema.js';

/** An upstream of a service: the service it calls and, optionally, a fixed local port. */
export interface NormalizedUpstream {
  /** The called service's mesh-wide key (`name`, or `name.namespace` outside default; src/api/names.ts). */
  service: string;
  port?: number;
  /** The port of a multi-port service the listener reaches; absent: its first. */
  servicePort?: number;
}

/** One port of a multi-port service, its protocol filled in (the service's, else detect). */
export interface NormalizedPort {
  name?: string;
  /** The service port callers address. */
  port: number;
  /** A fixed app port (one instance only); absent: the runner picks one per instance. */
  appPort?: number;
  protocol: 'http' | 'http1' | 'http2' | 'grpc' | 'tcp' | 'detect';
}

/** A health check with every default applied; durations in milliseconds. */
export type NormalizedHealth = {
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
} & ({ type: 'http'; path: string /** Undefined: any 2xx is healthy. */; status?: number } | { type: 'tcp' });

/** One version of a service; command and env already merged over the service's. */
export interface NormalizedVersion {
  name: string;
  labels: Record<string, string>;
  replicas: number;
  command?: string;
  env: Record<string, string>;
}

/** A mesh service with every default filled in. */
export interface NormalizedService {
  name: string;
  /** Absent: `default` (so a mesh without namespaces normalizes as before). The service's key is `serviceKey(name, namespace)`. */
  namespace?: string;
  /** 'detect' when the mesh file does not declare one. */
  protocol: 'http' | 'http1' | 'http2' | 'grpc' | 'tcp' | 'detect';
  /** Undefined: an external process the runner does not start. */
  command?: string;
  /** Absolute; the mesh file's folder when not given. */
  cwd: string;
  env: Record<string, string>;
  /** Fixed app port (only allowed with exactly one instance). */
  port?: number;
  /**
   * The service's ports when it lists them (`ports:`), in the order written: the first is
   * the app's `PORT`, and the one a caller without a port choice reaches. Absent: one
   * port (`port`, `protocol`), reached at any port a Host names.
   */
  ports?: NormalizedPort[];
  /** The service-level replicas: the default of each version. */
  replicas: number;
  public?: { port?: number };
  requires: string[];
  optional: boolean;
  upstreams: NormalizedUpstream[];
  health: NormalizedHealth;
  /** Upgrade protocols accepted through the mesh, lower case; absent: the default (WebSocket). */
  upgrades?: string[];
  /** At least one; `default` (no labels) when the service lists none. */
  versions: NormalizedVersion[];
}

/** Normalizes every service of a mesh that passed its schema; `meshDir` anchors relative cwds. */
export function normalizeServices(mesh: MeshResource, meshDir: string): NormalizedService[] {
  return mesh.spec.services.map((s) => normalizeService(s, meshDir));
}

/**
 * The proxy limits a Mesh sets, in milliseconds and bytes; only the fields it names
 * (each proxy applies its own defaults to the rest). Undefined when it sets none. The
 * same shape the snapshot carries them in.
 */
export type NormalizedProxyLimits = ProxyLimitsSnapshot;

export function normalizeProxyLimits(spec: ProxyLimitsSpec | undefined): NormalizedProxyLimits | undefined {
  if (spec === undefined) return undefined;
  const out: NormalizedProxyLimits = {};
  if (spec.maxRequestHeadBytes !== undefined) out.maxRequestHeadBytes = spec.maxRequestHeadBytes;
  if (spec.requestHeaderTimeout !== undefined) out.requestHeaderTimeoutMs = parseDurationMs(spec.requestHeaderTimeout);
  if (spec.idleTimeout !== undefined) out.idleTimeoutMs = parseDurationMs(spec.idleTimeout);
  if (spec.h2MaxConcurrentStreams !== undefined) out.h2MaxConcurrentStreams = spec.h2MaxConcurrentStreams;
  if (spec.h2MaxHeaderListBytes !== undefined) out.h2MaxHeaderListBytes = spec.h2MaxHeaderListBytes;
  if (spec.maxConnectionsPerListener !== undefined) out.maxConnectionsPerListener = spec.maxConnectionsPerListener;
  if (spec.appProbeTimeout !== undefined) out.appProbeTimeoutMs = parseDurationMs(spec.appProbeTimeout);
  if (spec.tcpConnectTimeout !== undefined) out.tcpConnectTimeoutMs = parseDurationMs(spec.tcpConnectTimeout);
  if (spec.tcpIdleTimeout !== undefined) out.tcpIdleTimeoutMs = parseDurationMs(spec.tcpIdleTimeout);
  if (spec.maxConcurrentScrapes !== undefined) out.maxConcurrentScrapes = spec.maxConcurrentScrapes;
  if (spec.scrapeTimeout !== undefined) out.scrapeTimeoutMs = parseDurationMs(spec.scrapeTimeout);
  return out;
}

/** The default share of new traces sampled: 1%, Istio's default. */
export const DEFAULT_SAMPLING_PERCENTAGE = 1;

/**
 * The Mesh's `spec.telemetry.tracing` as the proxies take it (protocol.ts TracingSnapshot):
 * tracing is on by default, at 1%, exporting to the control plane; undefined when turned off.
 */
export function normalizeTracing(spec: TracingSpec | undefined): TracingSnapshot | undefined {
  if (spec?.enabled === false) return undefined;
  const out: TracingSnapshot = { samplingRate: (spec?.samplingPercentage ?? DEFAULT_SAMPLING_PERCENTAGE) / 100 };
  if (spec?.trustIncomingSampling === true) out.trustIncomingSampling = true;
  if (spec?.collector !== undefined) out.endpoint = spec.collector.endpoint;
  if (spec?.maxQueueSpans !== undefined) out.maxQueueSpans = spec.maxQueueSpans;
  if (spec?.batchSpans !== undefined) out.batchSpans = spec.batchSpans;
  if (spec?.flushInterval !== undefined) out.flushIntervalMs = Math.max(1, parseDurationMs(spec.flushInterval));
  if (spec?.exportTimeout !== undefined) out.exportTimeoutMs = Math.max(1, parseDurationMs(spec.exportTimeout));
  return out;
}

/** How many instances a service runs: the sum over its versions. */
export function instanceCount(service: MeshService): number {
  const replicas = service.replicas ?? MESH_DEFAULTS.replicas;
  return service.versions ? service.versions.reduce((n, v) => n + (v.replicas ?? replicas), 0) : replicas;
}

function normalizeService(s: MeshService, meshDir: string): NormalizedService {
  const replicas = s.replicas ?? MESH_DEFAULTS.replicas;
  const env = stringifyEnv(s.env);
  const versions: NormalizedVersion[] = (s.versions ?? [{ name: MESH_DEFAULTS.versionName }]).map((v) => ({
    name: v.name,
    labels: { ...v.labels },
    replicas: v.replicas ?? replicas,
    ...optional('command', v.command ?? s.command),
    env: { ...env, ...stringifyEnv(v.env) },
  }));
  const namespace = s.namespace ?? MESH_DEFAULTS.namespace;
  return {
    name: s.name,
    ...optional('namespace', namespace === MESH_DEFAULTS.namespace ? undefined : namespace),
    // A multi-port service's own protocol is its first port's: what a caller without a port choice speaks.
    protocol: s.ports?.[0]?.protocol ?? s.protocol ?? defaultProtocol(s.ports?.[0]?.port ?? s.port),
    ...optional('command', s.command),
    cwd: resolve(meshDir, s.cwd ?? '.'),
    env,
    ...optional('port', s.port),
    ...optional(
      'ports',
      s.ports?.map((p) => ({
        ...optional('name', p.name),
        port: p.port,
        ...optional('appPort', p.appPort),
        protocol: p.protocol ?? s.protocol ?? defaultProtocol(p.port),
      })),
    ),
    replicas,
    ...optional('public', s.public && { ...s.public }),
    requires: [...(s.requires ?? [])],
    optional: s.optional ?? false,
    upstreams: (s.upstreams ?? []).map((u) => normalizeUpstream(u, namespace)),
    health: normalizeHealth(s.health),
    ...optional(
      'upgrades',
      s.upgrades?.map((p) => p.toLowerCase()),
    ),
    versions,
  };
}

/**
 * An upstream as the key of the service it names: `svc` and `{ service }` are in the
 * calling service's namespace, `svc.ns` and `{ service, namespace }` in ns.
 */
export function upstreamRef(u: Upstream, callerNamespace: string): { name: string; namespace: string } {
  if (typeof u !== 'string') return { name: u.service, namespace: u.namespace ?? callerNamespace };
  const dot = u.indexOf('.');
  return dot === -1 ? { name: u, namespace: callerNamespace } : { name: u.slice(0, dot), namespace: u.slice(dot + 1) };
}

function normalizeUpstream(u: Upstream, callerNamespace: string): NormalizedUpstream {
  const ref = upstreamRef(u, callerNamespace);
  const service = serviceKey(ref.name, ref.namespace);
  if (typeof u === 'string') return { service };
  return { service, ...optional('port', u.port), ...optional('servicePort', u.servicePort) };
}

function normalizeHealth(h: HealthCheck | undefined): NormalizedHealth {
  const timing = {
    intervalMs: parseDurationMs(h?.interval ?? MESH_DEFAULTS.healthInterval),
    timeoutMs: parseDurationMs(h?.timeout ?? MESH_DEFAULTS.healthTimeout),
    healthyThreshold: h?.healthyThreshold ?? MESH_DEFAULTS.healthyThreshold,
    unhealthyThreshold: h?.unhealthyThreshold ?? MESH_DEFAULTS.unhealthyThreshold,
  };
  if (h && 'http' in h) return { type: 'http', path: h.http.path, ...optional('status', h.http.status), ...timing };
  return { type: 'tcp', ...timing };
}

function stringifyEnv(env: Record<string, string | number | boolean> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(env ?? {}).map(([k, v]) => [k, String(v)]));
}

// Leaves absent fields absent instead of present-and-undefined, so normalized
// services compare and serialize cleanly.
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
