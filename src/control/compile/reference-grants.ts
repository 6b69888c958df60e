// ReferenceGrant (Gateway API v1beta1): a route may send traffic to a Service of another
// namespace only when a grant in that namespace lets routes of the route's kind and
// namespace in. Without one the backendRef is invalid (routes.ts marks it; the proxy
// answers its share of requests 500), and the rest of the route works.
import type { ReferenceGrantConfig } from '../sources/mesh-config.js';
import { DEFAULT_NAMESPACE } from '../../api/names.js';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** The grants in force, as the config lists them. */
export type Grants = readonly { readonly resource: ReferenceGrantConfig }[] | undefined;

/**
 * The name of the Service a backend name stands for in `namespace` (itself, or the
 * service of a `<service>-<version>` backend); undefined when none.
 */
export type BackendResolver = (namespace: string, backendName: string) => string | undefined;

/**
 * True when a grant in `namespace` lets `from` (a route's kind and namespace) reach the
 * Service that `backendName` stands for there. A grant's `to.name` names a Service, so a
 * version backend is granted by a grant of its service.
 */
export function backendGranted(
  grants: Grants,
  from: { kind: string; namespace: string },
  namespace: string,
  backendName: string,
  resolve?: BackendResolver,
): boolean {
  const service = resolve ? resolve(namespace, backendName) : backendName;
  for (const { resource: g } of grants ?? []) {
    if ((g.metadata.namespace ?? DEFAULT_NAMESPACE) !== namespace) continue;
    if (!g.spec.from.some((f) => f.group === GATEWAY_GROUP && f.kind === from.kind && f.namespace === from.namespace)) continue;
    if (g.spec.to.some((t) => t.group === '' && t.kind === 'Service' && (t.name === undefined || t.name === service))) return true;
  }
  return false;
}
