// Checks of a Mesh resource that a schema cannot express because they relate one
// field to another: names that must be unique, upstreams that must exist, fixed
// ports that would collide on one machine. Runs only on a Mesh that passed its schema.
import { instanceCount } from './normalize.js';
import { didYouMean, fieldPath, type Problem, type Segment } from './problems.js';
import type { MeshResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** Every cross-field problem of a schema-valid Mesh. */
export function checkMesh(doc: SourceDocument, mesh: MeshResource): Problem[] {
  const problems: Problem[] = [];
  const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
  const services = mesh.spec.services;
  const names = [...new Set(services.map((s) => s.name))];
  const listed = `services: ${names.join(', ') || 'none'}`;

  const firstIndex = new Map<string, number>();
  services.forEach((s, i) => {
    const first = firstIndex.get(s.name);
    if (first === undefined) firstIndex.set(s.name, i);
    else at(['spec', 'services', i, 'name'], `duplicate service name "${s.name}" (also spec.services[${first}]); service names must be unique`);
  });

  services.forEach((s, i) => {
    const base: Segment[] = ['spec', 'services', i];

    const versionIndex = new Map<string, number>();
    s.versions?.forEach((v, k) => {
      const first = versionIndex.get(v.name);
      if (first === undefined) versionIndex.set(v.name, k);
      else at([...base, 'versions', k, 'name'], `duplicate version name "${v.name}" in service "${s.name}" (also versions[${first}])`);
    });

    const upstreamIndex = new Map<string, number>();
    s.upstreams?.forEach((u, k) => {
      const target = typeof u === 'string' ? u : u.service;
      const path = [...base, 'upstreams', k];
      // A service may call itself through the mesh (an instance calling its own Service, as
      // on Kubernetes): its requests go to its instances, this one included, by their sidecars.
      if (!firstIndex.has(target)) {
        at(path, `names service "${target}", which is not in the mesh (${listed})${didYouMean(target, names)}`);
      } else if (upstreamIndex.has(target)) {
        at(path, `lists service "${target}" again (also upstreams[${upstreamIndex.get(target)}])`);
      }
      if (!upstreamIndex.has(target)) upstreamIndex.set(target, k);
    });

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
    if (s.port !== undefined && instances !== 1) {
      at(
        [...base, 'port'],
        `fixes port ${s.port}, but service "${s.name}" has ${instances} instances and only one can listen on a port; remove port (the runner then picks one per instance) or run exactly one instance`,
      );
    }
  });

  problems.push(...checkBackendNames(doc, mesh));
  problems.push(...checkPorts(doc, mesh));
  return problems;
}

// A backendRef `a-b` means version b of service a; a service literally named `a-b`
// would make that ambiguous, so the two may not coexist.
function checkBackendNames(doc: SourceDocument, mesh: MeshResource): Problem[] {
  const problems: Problem[] = [];
  const versionBackends = new Map<string, string>();
  for (const s of mesh.spec.services) {
    for (const v of s.versions ?? []) versionBackends.set(`${s.name}-${v.name}`, `version "${v.name}" of service "${s.name}"`);
  }
  mesh.spec.services.forEach((s, i) => {
    const clash = versionBackends.get(s.name);
    if (clash) {
      problems.push(
        problemAt(
          doc,
          ['spec', 'services', i, 'name'],
          `service name "${s.name}" is also the backend name of ${clash}, so routes could not tell them apart; rename one`,
        ),
      );
    }
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
