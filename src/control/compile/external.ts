// ExternalServices → upstreams of a proxy's snapshot (Istio's ServiceEntry as Envoy
// clusters). A sidecar gets every ExternalService (as Istio's default exportTo "*"), keyed
// by its name and reached by its hosts; its routes, retries, timeouts and faults apply
// there, at the caller, as for a mesh service. Where the connection goes:
// - no egress gateway: the external endpoints themselves, with TLS originated when the
//   ExternalService says `tls` (the app spoke plain HTTP);
// - an egress gateway (Mesh outboundTrafficPolicy.egressGateway): HTTP ones go to the
//   gateway's instances over mutual TLS, and the gateway (whose snapshot has the real
//   endpoints and no routes, so nothing is retried twice) originates the TLS. TCP, TLS and
//   HTTPS ones go there too, over mutual TLS whose SNI names the ExternalService as Istio
//   does (`outbound_.<port>_._.<key>`, tunnelSniOf): opaque bytes carry no Host to go by.
import type { BackendSnapshot, Endpoint, ProxyInfo, UpstreamSnapshot } from '../../api/protocol.js';
import { DEFAULT_NAMESPACE, serviceKey } from '../../api/names.js';
import { DEFAULT_TRUST_DOMAIN, spiffeId } from '../../security/spiffe.js';
import type { ExternalServiceConfig } from '../../config/check-external-services.js';
import type { ControlConfig } from '../sources/mesh-config.js';
import { compileRoutes } from './routes.js';
import { serviceFault, serviceRetryBudget } from './resilience.js';

/** Whether `proxy` is the mesh's egress gateway. */
export function isEgressGateway(config: ControlConfig, proxy: Pick<ProxyInfo, 'kind' | 'service'>): boolean {
  return proxy.kind === 'gateway' && config.egressGateway !== undefined && proxy.service === config.egressGateway.name;
}

/** Istio's SNI for a connection to an egress gateway that names where it goes (its AUTO_PASSTHROUGH form). */
export function tunnelSniOf(port: number, key: string): string {
  return `outbound_.${port}_._.${key}`;
}

/** The version label of external endpoints (metrics, explain). */
const EXTERNAL_VERSION = 'external';

/**
 * The ExternalService upstreams of `proxy` (none for an ingress gateway). `gatewayEndpoints`:
 * the egress gateway's routable instances.
 */
export function compileExternalServices(
  config: ControlConfig,
  proxy: Pick<ProxyInfo, 'kind' | 'service'>,
  caller: string,
  gatewayEndpoints: () => Endpoint[],
): Record<string, UpstreamSnapshot> {
  const externals = config.externalServices ?? [];
  const out: Record<string, UpstreamSnapshot> = {};
  if (externals.length === 0) return out;
  const atGateway = isEgressGateway(config, proxy);
  if (proxy.kind !== 'sidecar' && !atGateway) return out;
  const byKey = new Map(externals.map((e) => [serviceKey(e.name, e.namespace), e]));
  const gateway = config.egressGateway;
  const backendOf = (key: string, e: ExternalServiceConfig): BackendSnapshot => {
    if (gateway !== undefined && !atGateway) {
      const identity = spiffeId({
        trustDomain: config.identity?.trustDomain ?? DEFAULT_TRUST_DOMAIN,
        namespace: DEFAULT_NAMESPACE,
        serviceAccount: gateway.name,
      });
      return {
        name: key,
        endpoints: gatewayEndpoints(),
        mtls: { identities: [identity] },
        ...(e.protocol === 'HTTP' ? {} : { tunnelSni: tunnelSniOf(e.port, key) }),
      };
    }
    const endpoints = e.endpoints.map((x, i) => ({ id: `${key}/${i}`, host: x.host, port: x.port, version: EXTERNAL_VERSION, external: key }));
    return { name: key, endpoints, ...(e.tls !== undefined ? { originateTls: { sni: e.tls.sni, ca: e.tls.ca } } : {}) };
  };
  for (const [key, e] of byKey) {
    const protocol = e.protocol === 'HTTP' ? 'http1' : 'tcp';
    const resolve = (ns: string, name: string): string | undefined => (byKey.has(serviceKey(name, ns)) ? name : undefined);
    // The gateway forwards as asked: the caller's sidecar already routed, retried and timed the request.
    const routes = atGateway ? [] : compileRoutes(key, config.routes, protocol, config.policies, { caller, resolve });
    const backends: Record<string, BackendSnapshot> = { [key]: backendOf(key, e) };
    for (const r of routes) {
      for (const b of r.backends) {
        const other = byKey.get(b.backend);
        if (other !== undefined && !(b.backend in backends)) backends[b.backend] = backendOf(b.backend, other);
      }
    }
    const u: UpstreamSnapshot = { service: key, protocol, routes, backends, externalHosts: [...e.hosts] };
    if (e.protocol === 'TLS' || e.protocol === 'HTTPS') u.sniHosts = [...e.hosts];
    const fault = atGateway ? undefined : serviceFault(key, config.policies);
    if (fault) u.fault = fault;
    const budget = serviceRetryBudget(key, config.policies);
    if (budget) u.retryBudget = budget;
    out[key] = u;
  }
  return out;
}
