// Checks of PeerAuthentications against the mesh: each lives in a namespace that holds
// services, its targetRefs name Services of that namespace, its port-level modes name
// ports the targeted services have, and two policies never claim the same scope (which
// one would win is then a guess, so it is refused with both places named).
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { MeshResource, PeerAuthenticationResource } from './schema.js';
import { namespaceOf, ServiceIndex } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid PeerAuthentication and the document it came from. */
export interface PeerAuthenticationSource {
  doc: SourceDocument;
  resource: PeerAuthenticationResource;
}

/** Every problem of the PeerAuthentications against the mesh. */
export function checkPeerAuthentications(mesh: MeshResource, policies: readonly PeerAuthenticationSource[]): Problem[] {
  const problems: Problem[] = [];
  const index = new ServiceIndex(mesh);
  // Scope (`ns/*` or `ns/service`) → where it was first claimed.
  const scopes = new Map<string, { source: PeerAuthenticationSource; path: Segment[] }>();
  const claim = (scope: string, source: PeerAuthenticationSource, path: Segment[]): void => {
    const first = scopes.get(scope);
    if (first === undefined) {
      scopes.set(scope, { source, path });
      return;
    }
    const where = first.source.doc.locate(first.path);
    const name = `${namespaceOf(first.source.resource)}/${first.source.resource.metadata.name}`;
    problems.push(
      problemAt(
        source.doc,
        path,
        `${scope.endsWith('/*') ? `namespace ${scope.slice(0, -2)} already has a namespace-wide PeerAuthentication` : `service ${scope} is already targeted by a PeerAuthentication`} (${name}, ${first.source.doc.file}${where ? `:${where.line}` : ''}); one mode per scope`,
      ),
    );
  };
  for (const source of policies) {
    const { doc, resource } = source;
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    const ns = namespaceOf(resource);
    if (!index.hasNamespace(ns)) {
      at(
        resource.metadata.namespace === undefined ? ['metadata'] : ['metadata', 'namespace'],
        `names namespace ${ns}, which no service of the mesh is in (namespaces: ${index.namespaces().join(', ') || 'none'})`,
      );
      continue;
    }
    const targets = resource.spec.targetRefs;
    const targeted: string[] = [];
    if (targets === undefined) claim(`${ns}/*`, source, ['spec']);
    for (const [i, ref] of (targets ?? []).entries()) {
      const path: Segment[] = ['spec', 'targetRefs', i];
      if (ref.group !== '' || ref.kind !== 'Service') {
        at(
          [...path, ref.group !== '' ? 'group' : 'kind'],
          `a PeerAuthentication targets Services: group "" and kind Service (got group "${ref.group}", kind "${ref.kind}")`,
        );
        continue;
      }
      if (ref.sectionName !== undefined) {
        at([...path, 'sectionName'], 'a Service target has no sections here; use portLevelMtls for one port');
        continue;
      }
      if (index.get(ns, ref.name) === undefined) {
        const names = index.names(ns);
        at(
          [...path, 'name'],
          `names service "${ref.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)})${didYouMean(ref.name, names)}`,
        );
        continue;
      }
      targeted.push(ref.name);
      claim(`${ns}/${ref.name}`, source, [...path, 'name']);
    }
    // A port-level mode must name a port of a targeted service (of any service of the namespace when namespace-wide).
    const services = targets === undefined ? index.names(ns) : targeted;
    const ports = new Set<number>();
    for (const name of services) {
      const s = index.get(ns, name);
      for (const p of s?.ports ?? []) ports.add(p.port);
      if (s?.ports === undefined) ports.add(80);
    }
    for (const port of Object.keys(resource.spec.portLevelMtls ?? {})) {
      const n = Number(port);
      if (n < 1 || n > 65535) at(['spec', 'portLevelMtls', port], `port ${port} is not a port number (1 to 65535)`);
      else if (services.length > 0 && !ports.has(n))
        at(['spec', 'portLevelMtls', port], `port ${port} is no port of the targeted services (ports: ${[...ports].sort((a, b) => a - b).join(', ')})`);
    }
  }
  return problems;
}
