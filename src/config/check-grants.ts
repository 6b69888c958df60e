// Checks of ReferenceGrants against the mesh: a grant lives in a namespace that holds
// services (it lets routes reach them), and a `to` that names a Service names one of
// that namespace. Kinds the mesh has no use for are refused with what would be right,
// since a grant that can never apply is a typo more often than a plan.
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { MeshResource, ReferenceGrantResource } from './schema.js';
import { namespaceOf, ServiceIndex } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid ReferenceGrant and the document it came from. */
export interface GrantSource {
  doc: SourceDocument;
  resource: ReferenceGrantResource;
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** The kinds whose backendRefs a grant may let into its namespace. */
export const GRANTABLE_ROUTE_KINDS: ReadonlySet<string> = new Set(['HTTPRoute', 'GRPCRoute', 'TCPRoute']);

/** Every problem of the ReferenceGrants against the mesh. */
export function checkReferenceGrants(mesh: MeshResource, grants: readonly GrantSource[]): Problem[] {
  const problems: Problem[] = [];
  const index = new ServiceIndex(mesh);
  const seen = new Map<string, GrantSource>();
  for (const grant of grants) {
    const { doc, resource } = grant;
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    const ns = namespaceOf(resource);
    const id = `${ns}/${resource.metadata.name}`;
    const first = seen.get(id);
    if (first) {
      const where = first.doc.locate(['metadata', 'name']);
      at(['metadata', 'name'], `ReferenceGrant "${id}" is defined twice (also ${first.doc.file}${where ? `:${where.line}` : ''}); names must be unique`);
    } else {
      seen.set(id, grant);
    }
    if (!index.hasNamespace(ns)) {
      at(
        resource.metadata.namespace === undefined ? ['metadata'] : ['metadata', 'namespace'],
        `names namespace ${ns}, which no service of the mesh is in (namespaces: ${index.namespaces().join(', ') || 'none'}); a ReferenceGrant lives in the namespace of the Services it opens`,
      );
    }
    resource.spec.from.forEach((f, i) => {
      const path: Segment[] = ['spec', 'from', i];
      if (f.group !== GATEWAY_GROUP) at([...path, 'group'], `must be ${GATEWAY_GROUP} (routes are the references a mesh grants; got "${f.group}")`);
      else if (!GRANTABLE_ROUTE_KINDS.has(f.kind)) at([...path, 'kind'], `must be HTTPRoute, GRPCRoute or TCPRoute (got "${f.kind}")`);
    });
    resource.spec.to.forEach((t, i) => {
      const path: Segment[] = ['spec', 'to', i];
      if (t.group !== '' || t.kind !== 'Service') {
        at([...path, t.group !== '' ? 'group' : 'kind'], `a mesh grant opens Services: group "" and kind Service (got group "${t.group}", kind "${t.kind}")`);
        return;
      }
      if (t.name !== undefined && index.hasNamespace(ns) && !index.get(ns, t.name)) {
        const names = index.names(ns);
        at(
          [...path, 'name'],
          `names service "${t.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)})${didYouMean(t.name, names)}`,
        );
      }
    });
  }
  return problems;
}
