// PeerAuthentication, compiled: the mode of each inbound listener of a service, and what a
// caller needs to reach it (mutual TLS or plaintext, and the SPIFFE ID its certificate
// must name). Precedence, as Istio's: a port-level mode > a Service-targeted policy > a
// namespace-wide one (no targetRefs) > the mesh's `spec.mtls.mode` (default STRICT).
//
// Every service of a Trellis mesh has a sidecar, so a caller originates mutual TLS to any
// destination whose mode is not DISABLE (Istio's auto mTLS), PERMISSIVE included: a
// PERMISSIVE port takes it, and the caller's identity reaches authorization.
import type { InboundMtls, MtlsMode, PeerMtls } from '../../api/protocol.js';
import { DEFAULT_NAMESPACE } from '../../api/names.js';
import { DEFAULT_TRUST_DOMAIN, spiffeId } from '../../security/spiffe.js';
import type { ControlConfig, PeerAuthenticationConfig, ServiceConfig } from '../sources/mesh-config.js';

/** The port a one-port service is addressed at (`Host: svc` means 80), for port-level modes. */
const DEFAULT_SERVICE_PORT = 80;

/** The PeerAuthentication that decides for `service`: the one targeting it, else its namespace's. */
function policyFor(config: ControlConfig, service: ServiceConfig): PeerAuthenticationConfig | undefined {
  const ns = service.namespace ?? DEFAULT_NAMESPACE;
  let wide: PeerAuthenticationConfig | undefined;
  for (const { resource } of config.peerAuthentications ?? []) {
    if ((resource.metadata.namespace ?? DEFAULT_NAMESPACE) !== ns) continue;
    const targets = resource.spec.targetRefs;
    if (targets === undefined) wide ??= resource;
    else if (targets.some((t) => t.group === '' && t.kind === 'Service' && t.name === service.name)) return resource;
  }
  return wide;
}

/** The mode of `service`'s inbound listener at `port` (undefined: a one-port service). */
export function mtlsModeOf(config: ControlConfig, service: ServiceConfig, port: number | undefined): MtlsMode {
  const policy = policyFor(config, service);
  const portMode = policy?.spec.portLevelMtls?.[String(port ?? DEFAULT_SERVICE_PORT)]?.mode;
  return portMode ?? policy?.spec.mtls.mode ?? config.mtlsMode ?? 'STRICT';
}

/** The modes of the proxy's own inbound listeners. */
export function inboundMtls(config: ControlConfig, service: ServiceConfig): InboundMtls {
  const ports = service.ports;
  if (ports === undefined || ports.length === 0) return { mode: mtlsModeOf(config, service, undefined) };
  const first = mtlsModeOf(config, service, ports[0]!.port);
  const differ = ports.flatMap((p) => {
    const mode = mtlsModeOf(config, service, p.port);
    return mode === first ? [] : [{ port: p.port, mode }];
  });
  return differ.length > 0 ? { mode: first, ports: differ } : { mode: first };
}

/** The SPIFFE ID of `service`'s workloads (each service is its own service account). */
export function serviceSpiffeId(config: ControlConfig, service: ServiceConfig): string {
  return spiffeId({
    trustDomain: config.identity?.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    namespace: service.namespace ?? DEFAULT_NAMESPACE,
    serviceAccount: service.name,
  });
}

/** How a caller reaches `service` at `port`: mutual TLS expecting its SPIFFE ID, or undefined for plaintext (DISABLE). */
export function peerMtls(config: ControlConfig, service: ServiceConfig, port: number | undefined): PeerMtls | undefined {
  if (mtlsModeOf(config, service, port) === 'DISABLE') return undefined;
  return { identities: service.identities?.length ? [...service.identities] : [serviceSpiffeId(config, service)] };
}
