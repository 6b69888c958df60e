// SPIFFE IDs: the name of a workload in its certificate's URI SAN, in the shape Istio and
// Linkerd use on Kubernetes (`spiffe://<trust-domain>/ns/<namespace>/sa/<service account>`),
// so a mesh moved to Kubernetes keeps its identities and its policies. Locally a
// service is its own service account.

/** The trust domain when the mesh names none: Kubernetes' default cluster domain, as Istio's. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** The namespace of a service that names none (Kubernetes' `default`). */
export const DEFAULT_NAMESPACE = 'default';

/** A workload's name in the mesh. */
export interface WorkloadName {
  trustDomain: string;
  namespace: string;
  /** The service account; locally, the service's name. */
  serviceAccount: string;
}

// A trust domain is a DNS name (SPIFFE ID spec 2.1: lower-case letters, digits, dots,
// dashes, underscores); path segments are DNS labels, as namespaces and services are.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Whether `s` may be a trust domain (the schema checks the mesh file's with the same rule). */
export function isTrustDomain(s: string): boolean {
  return TRUST_DOMAIN.test(s) && !s.startsWith('.') && !s.endsWith('.');
}

/** `spiffe://cluster.local/ns/default/sa/backend`. */
export function spiffeId(name: WorkloadName): string {
  return `spiffe://${name.trustDomain}/ns/${name.namespace}/sa/${name.serviceAccount}`;
}

/** The parts of a SPIFFE ID of the Kubernetes shape, or undefined when `uri` is no such ID. */
export function parseSpiffeId(uri: string): WorkloadName | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, trustDomain = '', namespace = '', serviceAccount = ''] = m;
  if (!isTrustDomain(trustDomain) || !SEGMENT.test(namespace) || !SEGMENT.test(serviceAccount)) return undefined;
  return { trustDomain, namespace, serviceAccount };
}
