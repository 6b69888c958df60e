// Which SPIFFE name a proxy's certificate carries: the trust domain of the mesh, the
// namespace of its service and the service's name as its service account. One function,
// so the certificate and the SPIFFE IDs callers expect (compile/mtls.ts) agree.
import { splitServiceKey } from '../../api/names.js';
import type { WorkloadName } from '../../security/spiffe.js';
import type { ServiceConfig } from '../sources/mesh-config.js';

/**
 * The name in the certificate of a proxy of service key `serviceKey` (`name`, or
 * `name.namespace` outside default; a gateway's name carries none). Before, the key was
 * the service account whole and the namespace always `default`: a service outside default
 * got `sa/echo.ns`, which is no SPIFFE ID of the Kubernetes shape (found when mTLS checked it).
 */
export function workloadName(trustDomain: string, serviceKey: string, service: ServiceConfig | undefined): WorkloadName {
  const { name, namespace } = splitServiceKey(serviceKey);
  return { trustDomain, namespace: service?.namespace ?? namespace, serviceAccount: service?.name ?? name };
}
