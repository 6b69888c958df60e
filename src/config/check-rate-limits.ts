// Checks of RateLimitPolicies against the mesh and routes they apply to: targets (a
// Service, an HTTPRoute or GRPCRoute, a rule of one by name, in the policy's namespace),
// limit names unique within a policy (they name metric series and header items), an
// interval from 1 ms to 24 h, a key with exactly one of source / header, maxKeys only on
// a keyed limit, and a global limit without a key (its quotas are per service, not per key).
// Runs on schema-valid resources.
import { parseGatewayDurationMs } from './duration.js';
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { RouteSource } from './check-routes.js';
import { GATEWAY_API_VERSION, type MeshResource, type RateLimitPolicyResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';
import { ServiceIndex } from './service-index.js';

/** A schema-valid RateLimitPolicy and the document it came from. */
export interface RateLimitPolicySource {
  doc: SourceDocument;
  resource: RateLimitPolicyResource;
}

const GATEWAY_GROUP = GATEWAY_API_VERSION.split('/')[0]!;
const MAX_INTERVAL_MS = 24 * 3_600_000;

/** Every problem of the RateLimitPolicies. */
export function checkRateLimitPolicies(mesh: MeshResource, routes: readonly RouteSource[], policies: readonly RateLimitPolicySource[]): Problem[] {
  const problems: Problem[] = [];
  const index = new ServiceIndex(mesh);
  const routesByKey = new Map<string, RouteSource['resource']>();
  for (const { resource } of routes) {
    if (resource.kind === 'TCPRoute') continue;
    const key = `${resource.kind}/${resource.metadata.namespace ?? 'default'}/${resource.metadata.name}`;
    if (!routesByKey.has(key)) routesByKey.set(key, resource);
  }
  for (const { doc, resource } of policies) {
    const ns = resource.metadata.namespace ?? 'default';
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    if (resource.spec.targetRefs === undefined && !index.hasNamespace(ns)) {
      at(['metadata', 'namespace'], `namespace ${ns} holds no service; a RateLimitPolicy without targetRefs covers every service of its own namespace`);
    }
    for (const [i, ref] of (resource.spec.targetRefs ?? []).entries()) {
      const path: Segment[] = ['spec', 'targetRefs', i];
      if (ref.kind === 'Service' && ref.group === '') {
        const services = index.names(ns);
        if (ref.sectionName !== undefined) at([...path, 'sectionName'], 'a Service target has no sections here; remove sectionName');
        else if (!services.includes(ref.name)) {
          at(
            [...path, 'name'],
            `names service "${ref.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)}; a policy targets services of its own namespace)${didYouMean(ref.name, services)}`,
          );
        }
        continue;
      }
      // A Gateway: its gateway proxy counts every request it takes from outside (the edge).
      if (ref.kind === 'Gateway' && ref.group === GATEWAY_GROUP) {
        if (ref.sectionName !== undefined) at([...path, 'sectionName'], 'a Gateway target covers the whole Gateway here; remove sectionName');
        continue;
      }
      if ((ref.kind === 'HTTPRoute' || ref.kind === 'GRPCRoute') && ref.group === GATEWAY_GROUP) {
        const route = routesByKey.get(`${ref.kind}/${ns}/${ref.name}`);
        if (route === undefined) {
          const names = [...routesByKey.keys()].filter((k) => k.startsWith(`${ref.kind}/${ns}/`)).map((k) => k.slice(ref.kind.length + ns.length + 2));
          at(
            [...path, 'name'],
            `names ${ref.kind} "${ref.name}", which does not exist in namespace ${ns} (routes: ${names.join(', ') || 'none'})${didYouMean(ref.name, names)}`,
          );
          continue;
        }
        if (ref.sectionName !== undefined) {
          const ruleNames = (route.spec.rules as readonly { name?: string }[]).flatMap((r) => (r.name === undefined ? [] : [r.name]));
          if (!ruleNames.includes(ref.sectionName)) {
            at(
              [...path, 'sectionName'],
              `names rule "${ref.sectionName}", which ${ref.kind} "${ref.name}" does not have (named rules: ${ruleNames.join(', ') || 'none'})${didYouMean(ref.sectionName, ruleNames)}`,
            );
          }
        }
        continue;
      }
      at(
        [...path, 'kind'],
        `kind "${ref.kind}" (group "${ref.group}") can't be targeted; name a Service (group ""), or an HTTPRoute, GRPCRoute or Gateway (group gateway.networking.k8s.io)`,
      );
    }
    const names = new Map<string, number>();
    resource.spec.limits.forEach((limit, l) => {
      const path: Segment[] = ['spec', 'limits', l];
      const first = names.get(limit.name);
      if (first !== undefined)
        at([...path, 'name'], `limit name "${limit.name}" is also the name of limits[${first}]; limit names must be unique within a policy`);
      else names.set(limit.name, l);
      const ms = parseGatewayDurationMs(limit.interval);
      if (ms < 1 || ms > MAX_INTERVAL_MS) at([...path, 'interval'], `is ${limit.interval}; an interval is from 1ms to 24h`);
      const key = limit.key;
      const kinds = key === undefined ? [] : Object.keys(key);
      if (key !== undefined && kinds.length !== 1) {
        at([...path, 'key'], `needs exactly one of source or header${kinds.length > 1 ? ` (has ${kinds.join(' and ')})` : ''}`);
      }
      if (limit.maxKeys !== undefined && key === undefined) at([...path, 'maxKeys'], 'bounds the buckets of a keyed limit; this limit has no key (one bucket)');
      if (limit.global === true && key !== undefined) {
        at(
          [...path, 'global'],
          'a global limit is one rate for all replicas of the service, split into quotas per replica; it takes no key (use a local keyed limit beside it)',
        );
      }
    });
  }
  return problems;
}
