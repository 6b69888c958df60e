// Which SPIFFE name a proxy's certificate carries: the trust domain of the mesh, the
// namespace of its service and the service as its service account. One function, so the
// namespaces of mesh services (issue 12) change one line here.
import { DEFAULT_NAMESPACE, type WorkloadName } from '../../security/spiffe.js';
import type { ServiceConfig } from '../sources/mesh-config.js';

/** The namespace of a service of the mesh (and of a gateway, which is no service): `default` until services carry one. */
export function namespaceOf(_service: ServiceConfig | undefined): string {
  return DEFAULT_NAMESPACE;
}

/** The name in the certificate of a proxy of `service`. */
export function workloadName(trustDomain: string, serviceName: string, service: ServiceConfig | undefined): WorkloadName {
  return { trustDomain, namespace: namespaceOf(service), serviceAccount: serviceName };
}
