// Checks of HTTPRoutes against the mesh they route in: parents and backends must be
// mesh services (or `<service>-<version>` backends), a rule must be able to send
// traffic somewhere, and regular expressions must compile. Runs only on routes that
// passed their schema (with defaults applied) and a Mesh that passed its own.
import { didYouMean, type Problem, type Segment } from './problems.js';
import { MESH_DEFAULTS, type HTTPRouteResource, type MeshResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid HTTPRoute and the document it came from. */
export interface RouteSource {
  doc: SourceDocument;
  resource: HTTPRouteResource;
}

/** Every problem of the routes against the mesh, plus routes defined twice. */
export function checkRoutes(mesh: MeshResource, routes: readonly RouteSource[]): Problem[] {
  const services = new Map(mesh.spec.services.map((s) => [s.name, s]));
  const serviceNames = [...services.keys()];
  const backendNames = new Set<string>();
  for (const s of mesh.spec.services) {
    backendNames.add(s.name);
    for (const v of s.versions ?? []) backendNames.add(`${s.name}-${v.name}`);
  }
  // Messages list the names people write; `<service>-default` (a service without
  // versions) stays valid but would only clutter the list.
  const backendList = [...backendNames].sort();
  for (const s of mesh.spec.services) {
    if (!s.versions) backendNames.add(`${s.name}-${MESH_DEFAULTS.versionName}`);
  }

  const problems: Problem[] = [];
  const seen = new Map<string, RouteSource>();
  for (const route of routes) {
    const { doc, resource } = route;
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));

    const id = `${resource.metadata.namespace ?? 'default'}/${resource.metadata.name}`;
    const first = seen.get(id);
    if (first) {
      const where = first.doc.locate(['metadata', 'name']);
      at(['metadata', 'name'], `HTTPRoute "${id}" is defined twice (also ${first.doc.file}${where ? `:${where.line}` : ''}); route names must be unique`);
    } else {
      seen.set(id, route);
    }

    resource.spec.parentRefs.forEach((p, i) => {
      const path: Segment[] = ['spec', 'parentRefs', i];
      if ((p.kind ?? 'Service') !== 'Service') {
        return at([...path, 'kind'], `kind "${p.kind}" is not supported yet; in the mesh a route's parent is a Service (kind: Service)`);
      }
      if ((p.group ?? '') !== '') {
        return at([...path, 'group'], `must be "" (the core group) for kind Service (got "${p.group}")`);
      }
      const service = services.get(p.name);
      if (!service) {
        return at([...path, 'name'], `names service "${p.name}", which is not in the mesh (services: ${serviceNames.join(', ') || 'none'})${didYouMean(p.name, serviceNames)}`);
      }
      if ((service.protocol ?? MESH_DEFAULTS.protocol) === 'tcp') {
        at([...path, 'name'], `names service "${p.name}", whose protocol is tcp; an HTTPRoute only applies to http services`);
      }
    });

    resource.spec.rules.forEach((rule, r) => {
      const rulePath: Segment[] = ['spec', 'rules', r];
      rule.backendRefs.forEach((b, k) => {
        const path: Segment[] = [...rulePath, 'backendRefs', k];
        if ((b.kind ?? 'Service') !== 'Service') {
          return at([...path, 'kind'], `kind "${b.kind}" is not supported; a backend is a mesh Service (kind: Service)`);
        }
        if ((b.group ?? '') !== '') {
          return at([...path, 'group'], `must be "" (the core group) for kind Service (got "${b.group}")`);
        }
        if (!backendNames.has(b.name)) {
          at([...path, 'name'], `names "${b.name}", which is neither a mesh service nor <service>-<version> of one (backends: ${backendList.join(', ') || 'none'})${didYouMean(b.name, backendList)}`);
        }
      });
      if (rule.backendRefs.every((b) => (b.weight ?? 1) === 0)) {
        at([...rulePath, 'backendRefs'], 'every backendRef has weight 0, so the rule could send traffic nowhere; give at least one a weight above 0');
      }
      rule.matches?.forEach((m, i) => {
        m.headers?.forEach((h, k) => {
          if (h.type !== 'RegularExpression') return;
          try {
            new RegExp(h.value);
          } catch (err) {
            at([...rulePath, 'matches', i, 'headers', k, 'value'], `is not a valid regular expression: ${(err as Error).message}`);
          }
        });
      });
    });
  }
  return problems;
}
