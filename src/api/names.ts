// How a namespaced service is named across the mesh. A service is (namespace, name);
// everything that names it outside the config (snapshot keys, metrics labels, CLI
// arguments, admin API paths, the caller header) uses one string, its key: `name` in the
// `default` namespace, else `name.namespace`. So a mesh with only default-namespace
// services names everything exactly as before namespaces existed. Names are DNS
// labels (no dots), so a key splits back without ambiguity.

/** The namespace of a service, route or policy that names none (as on Kubernetes). */
export const DEFAULT_NAMESPACE = 'default';

/** The cluster domain of `svc.ns.svc.<domain>` host names when the mesh sets none. */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

/** The mesh-wide key of service `name` in `namespace`: `name`, or `name.namespace` outside `default`. */
export function serviceKey(name: string, namespace: string | undefined): string {
  return namespace === undefined || namespace === DEFAULT_NAMESPACE ? name : `${name}.${namespace}`;
}

/** A key back to its parts: `echo` → (echo, default), `echo.ns-a` → (echo, ns-a). */
export function splitServiceKey(key: string): { name: string; namespace: string } {
  const dot = key.indexOf('.');
  return dot === -1 ? { name: key, namespace: DEFAULT_NAMESPACE } : { name: key.slice(0, dot), namespace: key.slice(dot + 1) };
}

/**
 * The host names (without port, lower case) by which a caller in namespace `caller`
 * reaches service `name` in `namespace`, as Kubernetes DNS resolves them: `name` (only
 * from its own namespace), `name.ns`, `name.ns.svc`, `name.ns.svc.<clusterDomain>`.
 */
export function serviceHostNames(name: string, namespace: string, caller: string, clusterDomain: string = DEFAULT_CLUSTER_DOMAIN): string[] {
  const qualified = `${name}.${namespace}`;
  const out = [qualified, `${qualified}.svc`, `${qualified}.svc.${clusterDomain}`];
  if (namespace === caller) out.unshift(name);
  return out;
}
