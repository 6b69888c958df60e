// The services of a Mesh by namespace, as the cross-resource checks look them up: a
// service is (namespace, name), so names repeat across namespaces, and a backendRef
// name is read in one namespace (a service there, or `<service>-<version>` of one).
import { MESH_DEFAULTS, type MeshResource, type MeshService } from './schema.js';

export class ServiceIndex {
  readonly #byNamespace = new Map<string, Map<string, MeshService>>();

  constructor(mesh: MeshResource) {
    for (const s of mesh.spec.services) {
      const ns = s.namespace ?? MESH_DEFAULTS.namespace;
      let names = this.#byNamespace.get(ns);
      if (names === undefined) this.#byNamespace.set(ns, (names = new Map()));
      // The first of a duplicate wins (check-mesh.ts reports the second).
      if (!names.has(s.name)) names.set(s.name, s);
    }
  }

  get(namespace: string, name: string): MeshService | undefined {
    return this.#byNamespace.get(namespace)?.get(name);
  }

  hasNamespace(namespace: string): boolean {
    return this.#byNamespace.has(namespace);
  }

  /** Every namespace that holds a service, sorted. */
  namespaces(): string[] {
    return [...this.#byNamespace.keys()].sort();
  }

  /** The service names of one namespace, in file order. */
  names(namespace: string): string[] {
    return [...(this.#byNamespace.get(namespace)?.keys() ?? [])];
  }

  /**
   * The backend names routes may write for namespace `namespace`: its services and
   * `<service>-<version>` of each (`<service>-default` too, for a service without
   * versions, left out of `listed` so messages show the names people write).
   */
  backends(namespace: string): { known: Set<string>; listed: string[] } {
    const known = new Set<string>();
    for (const s of this.#byNamespace.get(namespace)?.values() ?? []) {
      known.add(s.name);
      for (const v of s.versions ?? []) known.add(`${s.name}-${v.name}`);
    }
    const listed = [...known].sort();
    for (const s of this.#byNamespace.get(namespace)?.values() ?? []) if (!s.versions) known.add(`${s.name}-${MESH_DEFAULTS.versionName}`);
    return { known, listed };
  }

  /**
   * "services: a, b" of a namespace (`services in namespace ns: ...` outside default), or
   * that no service is in it, for messages.
   */
  listing(namespace: string): string {
    if (!this.hasNamespace(namespace)) {
      return namespace === MESH_DEFAULTS.namespace && this.#byNamespace.size === 0
        ? 'services: none'
        : `no service of the mesh is in namespace ${namespace}; namespaces: ${this.namespaces().join(', ') || 'none'}`;
    }
    const where = namespace === MESH_DEFAULTS.namespace ? 'services' : `services in namespace ${namespace}`;
    return `${where}: ${this.names(namespace).join(', ')}`;
  }

  /** " in namespace ns" outside default, for messages. */
  static where(namespace: string): string {
    return namespace === MESH_DEFAULTS.namespace ? '' : ` in namespace ${namespace}`;
  }
}

/** The namespace of a service, route or policy as written (`default` when absent). */
export function namespaceOf(resource: { namespace?: string } | { metadata: { namespace?: string } }): string {
  const ns = 'metadata' in resource ? resource.metadata.namespace : resource.namespace;
  return ns ?? MESH_DEFAULTS.namespace;
}
