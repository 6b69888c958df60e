// The destination a gateway's request is counted against: the mesh service of the backend
// its route picked. A Gateway port's route table is keyed `<ns>/<gateway>/<port>` (no
// service), so without this every request at the edge would be labelled with the table;
// the dashboard's edges, `trellis top` and the access log want `trellis-ingress → backend`.
// Runs right after split (and again for a retry's new pick); a label only, read by telemetry.
import type { Split } from '../stack/decisions.js';
import type { Layer } from '../stack/layer.js';

/** The mesh service a backend name (`<service>` or `<service>-<version>`) belongs to; undefined: none known. */
export type ServiceOfBackend = (backend: string) => string | undefined;

/**
 * Resolves backend names against the snapshot's services (`meshServices`), the longest
 * service key that is the name or a `<key>-` prefix of it; cached per snapshot (the names
 * are the snapshot's, so the cache is bounded by its backends).
 */
export function serviceOfBackend(services: ReadonlySet<string>): ServiceOfBackend {
  const cache = new Map<string, string | undefined>();
  return (backend) => {
    if (cache.has(backend)) return cache.get(backend);
    let found: string | undefined = services.has(backend) ? backend : undefined;
    if (found === undefined) {
      for (const s of services) if (backend.startsWith(`${s}-`) && (found === undefined || s.length > found.length)) found = s;
    }
    cache.set(backend, found);
    return found;
  };
}

export function edgeDestination(serviceOf: () => ServiceOfBackend): Layer<Split> {
  return (next) => ({
    request(ex) {
      const service = serviceOf()(ex.backend.name);
      if (service !== undefined) ex.service = service;
      next(ex);
    },
  });
}
