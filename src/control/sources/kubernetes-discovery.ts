// The Kubernetes source's view (kubernetes-source.ts) as the model's discovered services
// and endpoints: what `trellis control --kubernetes` feeds the compiler in place of the
// instances that sidecars register locally. A Service is a mesh service (key `name`, or
// `name.namespace` outside default, as the mesh file names them); every address of its
// EndpointSlices is one endpoint, healthy only when the slice says ready (the kubelet's
// readiness probes are its health checks: the control plane does not check these itself).
// Callers reach an endpoint's sidecar at the pod's address on the inbound listener the
// injector put in front of the Service's targetPort (kubernetes-source.ts sidecarPorts:
// 15006 for the pod's first app port, 15007 for its second, … unless the sidecar
// declares others); they expect the certificate of the pod's ServiceAccount.
import { serviceKey } from '../../api/names.js';
import type { InstancePort, Protocol } from '../../api/protocol.js';
import { defaultProtocol } from '../../config/schema/mesh.js';
import { K8S_POD_PORTS } from '../../k8s/inject.js';
import type { Discovered, DiscoveredEndpoint } from '../model.js';
import type { HealthConfig, ServiceConfig } from './mesh-config.js';
import type { ClusterView, KubeEndpoint, KubePort } from './kubernetes-source.js';

/** The injected sidecar's first inbound listener. */
export const POD_INBOUND_PORT: number = K8S_POD_PORTS.inbound;

export interface DiscoveryOptions {
  /** The sidecars' first inbound port (default {@link POD_INBOUND_PORT}); the Service's port i is at this + i. */
  readonly inboundPort?: number;
}

// Never used to check (these services' endpoints are not the health checker's), but a
// ServiceConfig carries one: the mesh file's defaults.
const UNCHECKED: HealthConfig = { type: 'tcp', intervalMs: 10_000, timeoutMs: 1_000, healthyThreshold: 1, unhealthyThreshold: 3 };

/** A Service port's protocol: its appProtocol (KEP-3726 names, then the plain ones), else the mesh's default for the port. */
export function portProtocol(p: KubePort): Protocol {
  switch (p.appProtocol?.toLowerCase()) {
    case 'http':
    case 'kubernetes.io/ws':
      return 'http';
    case 'kubernetes.io/h2c':
    case 'http2':
      return 'http2';
    case 'grpc':
      return 'grpc';
    case 'tcp':
    case 'kubernetes.io/wss':
    case 'https':
    case 'tls':
      return 'tcp';
    default:
      return p.protocol === 'TCP' ? defaultProtocol(p.port) : 'tcp';
  }
}

/** The model's discovered services and endpoints for a cluster view. */
export function discoveredFromCluster(view: ClusterView, opts: DiscoveryOptions = {}): Discovered {
  const inboundPort = opts.inboundPort ?? POD_INBOUND_PORT;
  const tcpPorts = new Map<string, KubePort[]>();
  for (const s of view.services)
    tcpPorts.set(
      s.key,
      s.ports.filter((p) => p.protocol === 'TCP' && p.port > 0),
    );
  const keys = new Map(view.services.map((s) => [s.key, serviceKey(s.name, s.namespace)]));

  const identities = new Map<string, Set<string>>();
  const endpoints: DiscoveredEndpoint[] = [];
  for (const e of view.endpoints) {
    const ports = tcpPorts.get(e.service) ?? [];
    const key = keys.get(e.service);
    if (key === undefined || ports.length === 0) continue;
    if (e.identity) {
      const set = identities.get(key) ?? new Set<string>();
      set.add(e.identity);
      identities.set(key, set);
    }
    // The pod's sidecar's listener in front of that app port; a pod not (yet) known: the injector's defaults.
    const inboundOf = (ep: KubeEndpoint, app: number, i: number): number => ep.sidecarPorts?.find((s) => s.app === app)?.inbound ?? inboundPort + i;
    // The slice's port of the same name is where the app listens (the Service's targetPort, resolved).
    const appPort = (p: KubePort): number => e.ports.find((q) => q.name === p.name)?.port ?? (e.ports.length === 1 ? e.ports[0]!.port : p.port);
    const at: InstancePort[] = ports.map((p, i) => ({
      port: p.port,
      app: { host: e.address, port: appPort(p) },
      inbound: { host: e.address, port: inboundOf(e, appPort(p), i) },
    }));
    endpoints.push({
      id: `${key}@${e.address}`,
      service: key,
      version: e.version,
      inbound: at[0]!.inbound,
      app: at[0]!.app,
      ...(at.length > 1 ? { ports: at } : {}),
      status: e.health === 'healthy' ? 'healthy' : 'unhealthy',
    });
  }

  const allKeys = [...keys.values()];
  const services: ServiceConfig[] = [];
  for (const s of view.services) {
    const ports = tcpPorts.get(s.key) ?? [];
    if (ports.length === 0) continue; // UDP/SCTP only: nothing the mesh carries
    const key = keys.get(s.key)!;
    const ids = identities.get(key);
    services.push({
      name: s.name,
      namespace: s.namespace,
      protocol: portProtocol(ports[0]!),
      ...(ports.length > 1 ? { ports: ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: portProtocol(p) })) } : {}),
      // Any pod may call any Service on a cluster (DNS names them all): every sidecar is sent every service.
      upstreams: allKeys.filter((k) => k !== key).map((k) => ({ service: k })),
      health: UNCHECKED,
      versions: [],
      ...(ids ? { identities: [...ids].sort() } : {}),
    });
  }
  return { services, endpoints };
}
