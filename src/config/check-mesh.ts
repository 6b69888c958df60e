// Checks of a Mesh resource that a schema cannot express because they relate one
// field to another: names that must be unique, upstreams that must exist, fixed
// ports that would collide on one machine. Runs only on a Mesh that passed its schema.
import { instanceCount, upstreamRef } from './normalize.js';
import { namespaceOf, ServiceIndex } from './service-index.js';
import { didYouMean, fieldPath, type Problem, type Segment } from './problems.js';
import type { MeshResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** Every cross-field problem of a schema-valid Mesh. */
export function checkMesh(doc: SourceDocument, mesh: MeshResource, externals: ReadonlySet<string> = new Set()): Problem[] {
  const problems: Problem[] = [];
  const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
  const services = mesh.spec.services;
  const index = new ServiceIndex(mesh);

  // A service is (namespace, name): names repeat freely across namespaces.
  const firstIndex = new Map<string, number>();
  services.forEach((s, i) => {
    const key = `${namespaceOf(s)}/${s.name}`;
    const first = firstIndex.get(key);
    if (first === undefined) firstIndex.set(key, i);
    else
      at(
        ['spec', 'services', i, 'name'],
        `duplicate service name "${s.name}"${ServiceIndex.where(namespaceOf(s))} (also spec.services[${first}]); service names must be unique`,
      );
  });

  services.forEach((s, i) => {
    const base: Segment[] = ['spec', 'services', i];
    const ns = namespaceOf(s);

    const versionIndex = new Map<string, number>();
    s.versions?.forEach((v, k) => {
      const first = versionIndex.get(v.name);
      if (first === undefined) versionIndex.set(v.name, k);
      else at([...base, 'versions', k, 'name'], `duplicate version name "${v.name}" in service "${s.name}" (also versions[${first}])`);
    });

    const upstreamIndex = new Map<string, number>();
    s.upstreams?.forEach((u, k) => {
      const ref = upstreamRef(u, ns);
      const servicePort = typeof u === 'string' ? undefined : u.servicePort;
      // One listener per (service, port): two ports of one service may each have their own.
      const key = `${ref.namespace}/${ref.name}${servicePort === undefined ? '' : `:${servicePort}`}`;
      const path = [...base, 'upstreams', k];
      // A service may call itself through the mesh (an instance calling its own Service, as
      // on Kubernetes): its requests go to its instances, this one included, by their sidecars.
      const target = index.get(ref.namespace, ref.name);
      const external = target === undefined && externals.has(`${ref.namespace}/${ref.name}`);
      if (external && servicePort !== undefined) {
        at([...path, 'servicePort'], `names ExternalService "${ref.name}"${ServiceIndex.where(ref.namespace)}, which has one port; remove servicePort`);
      } else if (external && upstreamIndex.has(key)) {
        at(path, `lists ExternalService "${ref.name}"${ServiceIndex.where(ref.namespace)} again (also upstreams[${upstreamIndex.get(key)}])`);
      } else if (external) {
        // Its listener reaches the ExternalService (compile/external.ts says how).
      } else if (!target) {
        const names = index.names(ref.namespace);
        at(
          path,
          `names service "${ref.name}"${ServiceIndex.where(ref.namespace)}, which is not in the mesh (${index.listing(ref.namespace)})${didYouMean(ref.name, names)}`,
        );
      } else if (upstreamIndex.has(key)) {
        at(
          path,
          `lists service "${ref.name}"${ServiceIndex.where(ref.namespace)}${servicePort === undefined ? '' : ` port ${servicePort}`} again (also upstreams[${upstreamIndex.get(key)}])`,
        );
      } else if (servicePort !== undefined) {
        const ports = target.ports;
        if (ports === undefined) {
          at(
            [...path, 'servicePort'],
            `names port ${servicePort} of service "${ref.name}"${ServiceIndex.where(ref.namespace)}, which lists no ports (it has one port; remove servicePort, or give "${ref.name}" a ports: list)`,
          );
        } else if (!ports.some((p) => p.port === servicePort)) {
          at(
            [...path, 'servicePort'],
            `names port ${servicePort}, which service "${ref.name}"${ServiceIndex.where(ref.namespace)} does not have (its ports: ${ports.map((p) => p.port).join(', ')})`,
          );
        }
      }
      if (!upstreamIndex.has(key)) upstreamIndex.set(key, k);
    });

    problems.push(...checkServicePorts(doc, s, base));

    const upgradeIndex = new Map<string, number>();
    s.upgrades?.forEach((p, k) => {
      const lower = p.toLowerCase();
      const path = [...base, 'upgrades', k];
      if (lower === 'h2c') {
        at(
          path,
          'h2c is never tunnelled through the mesh (after it, requests would skip the routes); an h2c upgrade is forwarded as a plain HTTP/1.1 request, and HTTP/2 reaches a service with prior knowledge',
        );
      } else if (upgradeIndex.has(lower)) {
        at(path, `lists "${p}" again (also upgrades[${upgradeIndex.get(lower)}])`);
      }
      if (!upgradeIndex.has(lower)) upgradeIndex.set(lower, k);
    });

    const instances = instanceCount(s);
    s.ports?.forEach((p, k) => {
      if (p.appPort !== undefined && instances !== 1) {
        at(
          [...base, 'ports', k, 'appPort'],
          `fixes app port ${p.appPort}, but service "${s.name}" has ${instances} instances and only one can listen on a port; remove appPort (the runner then picks one per instance) or run exactly one instance`,
        );
      }
    });
    if (s.port !== undefined && instances !== 1) {
      at(
        [...base, 'port'],
        `fixes port ${s.port}, but service "${s.name}" has ${instances} instances and only one can listen on a port; remove port (the runner then picks one per instance) or run exactly one instance`,
      );
    }
  });

  problems.push(...checkPorts(doc, mesh));
  return problems;
}

// A `ports:` list is a Kubernetes Service's: unique numbers and names, every port named
// once there are several (the app learns them as PORT_<NAME>), and no one-port shorthand beside it.
function checkServicePorts(doc: SourceDocument, s: MeshResource['spec']['services'][number], base: Segment[]): Problem[] {
  const problems: Problem[] = [];
  const ports = s.ports;
  if (ports === undefined) return problems;
  const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
  if (s.port !== undefined) {
    at(
      [...base, 'port'],
      `fixes the app port of a one-port service, but service "${s.name}" lists its ports; set appPort on a port of its ports: list instead`,
    );
  }
  const byNumber = new Map<number, number>();
  const byName = new Map<string, number>();
  ports.forEach((p, k) => {
    const path = [...base, 'ports', k];
    const first = byNumber.get(p.port);
    if (first !== undefined) at([...path, 'port'], `port ${p.port} is listed again (also ports[${first}]); service ports must be unique`);
    else byNumber.set(p.port, k);
    if (p.name === undefined) {
      if (ports.length > 1) at(path, `needs a name: a service with more than one port names each (its app learns it as PORT_<NAME>)`);
      return;
    }
    const named = byName.get(p.name);
    if (named !== undefined) at([...path, 'name'], `port name "${p.name}" is used again (also ports[${named}]); port names must be unique`);
    else byName.set(p.name, k);
  });
  return problems;
}

// Everything runs on one machine, so an app port and a public port may never be used
// twice anywhere, and an upstream port not twice in one service nor on a port that an
// app or public listener holds.
function checkPorts(doc: SourceDocument, mesh: MeshResource): Problem[] {
  const problems: Problem[] = [];
  const holders = new Map<number, string>();
  const claim = (port: number, path: Segment[], what: string, table = holders) => {
    const holder = table.get(port);
    if (holder !== undefined) problems.push(problemAt(doc, path, `port ${port} is already used by ${holder}; every fixed port must be different`));
    else table.set(port, `${fieldPath(path)} (${what})`);
  };
  mesh.spec.services.forEach((s, i) => {
    if (s.port !== undefined) claim(s.port, ['spec', 'services', i, 'port'], `app port of "${s.name}"`);
    // Two ports of one service may share an app port (as two Kubernetes Service ports may share a targetPort).
    const own = new Set<number>();
    s.ports?.forEach((p, k) => {
      if (p.appPort === undefined || own.has(p.appPort)) return;
      own.add(p.appPort);
      claim(p.appPort, ['spec', 'services', i, 'ports', k, 'appPort'], `app port of "${s.name}"${p.name === undefined ? '' : ` port ${p.name}`}`);
    });
    if (s.public?.port !== undefined) claim(s.public.port, ['spec', 'services', i, 'public', 'port'], `public port of "${s.name}"`);
  });
  mesh.spec.services.forEach((s, i) => {
    const own = new Map(holders);
    s.upstreams?.forEach((u, k) => {
      if (typeof u !== 'string' && u.port !== undefined) {
        claim(u.port, ['spec', 'services', i, 'upstreams', k, 'port'], `upstream "${u.service}" of "${s.name}"`, own);
      }
    });
  });
  return problems;
}
