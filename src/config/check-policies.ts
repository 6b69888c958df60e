// Checks of the resilience config against the routes and mesh it applies to: a rule's
// timeouts (backendRequest within request), policies' targetRefs (a route, a rule by
// name, or a Service that exists), a fault abort with exactly one of httpStatus /
// grpcStatus, and rule names unique within a route. Runs on schema-valid resources.
import { parseGatewayDurationMs } from './duration.js';
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { RouteSource } from './check-routes.js';
import { GATEWAY_API_VERSION, type HTTPRouteResource, type MeshResource, type PolicyResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';
import { ServiceIndex } from './service-index.js';

/** A schema-valid policy and the document it came from. */
export interface PolicySource {
  doc: SourceDocument;
  resource: PolicyResource;
}

const GATEWAY_GROUP = GATEWAY_API_VERSION.split('/')[0]!;

/** Every problem of the rules' timeouts and of the policies' targets and fields. */
export function checkPolicies(mesh: MeshResource, routes: readonly RouteSource[], policies: readonly PolicySource[]): Problem[] {
  const problems: Problem[] = [];
  const routesByKey = new Map<string, { resource: HTTPRouteResource }>();
  for (const route of routes) {
    const { doc, resource } = route;
    // Rule names, timeouts and policy targets are HTTPRoute's (GRPCRoute and TCPRoute have none here).
    if (resource.kind !== 'HTTPRoute') continue;
    const key = `${resource.metadata.namespace ?? 'default'}/${resource.metadata.name}`;
    if (!routesByKey.has(key)) routesByKey.set(key, { resource });
    const names = new Map<string, number>();
    resource.spec.rules.forEach((rule, r) => {
      const at = (path: Segment[], message: string) => problems.push(problemAt(doc, ['spec', 'rules', r, ...path], message));
      if (rule.name !== undefined) {
        const first = names.get(rule.name);
        if (first !== undefined) at(['name'], `rule name "${rule.name}" is also the name of rules[${first}]; rule names must be unique within a route`);
        else names.set(rule.name, r);
      }
      const request = rule.timeouts?.request;
      const backend = rule.timeouts?.backendRequest;
      if (request !== undefined && backend !== undefined) {
        const req = parseGatewayDurationMs(request);
        const be = parseGatewayDurationMs(backend);
        if (req !== 0 && (be === 0 || be > req)) {
          at(['timeouts', 'backendRequest'], `is ${backend}, longer than timeouts.request (${request}); one attempt can't take longer than the whole request`);
        }
      }
    });
  }

  const index = new ServiceIndex(mesh);
  for (const { doc, resource } of policies) {
    // A policy targets objects of its own namespace (LocalPolicyTargetReference).
    const ns = resource.metadata.namespace ?? 'default';
    const services = index.names(ns);
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    for (const [i, ref] of resource.spec.targetRefs.entries()) {
      const path: Segment[] = ['spec', 'targetRefs', i];
      if (ref.kind === 'Service' && ref.group === '') {
        if (resource.kind === 'RetryPolicy') {
          at([...path, 'kind'], 'a RetryPolicy targets an HTTPRoute (kind: HTTPRoute, group: gateway.networking.k8s.io)');
          continue;
        }
        if (ref.sectionName !== undefined && resource.kind !== 'BackendPolicy') {
          at([...path, 'sectionName'], 'a Service target has no sections here; remove sectionName');
          continue;
        }
        if (!services.includes(ref.name)) {
          at(
            [...path, 'name'],
            `names service "${ref.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)}; a policy targets services of its own namespace)${didYouMean(ref.name, services)}`,
          );
          continue;
        }
        if (ref.sectionName !== undefined) {
          // A BackendPolicy's section of a Service is one of its versions.
          const versions = (index.get(ns, ref.name)?.versions ?? []).map((v) => v.name);
          if (!versions.includes(ref.sectionName)) {
            at(
              [...path, 'sectionName'],
              `names version "${ref.sectionName}", which service "${ref.name}" does not have (versions: ${versions.join(', ') || 'none'})${didYouMean(ref.sectionName, versions)}`,
            );
          } else if (resource.kind === 'BackendPolicy' && resource.spec.outlierDetection !== undefined) {
            at(
              ['spec', 'outlierDetection'],
              'outlier detection is per service (one detector watches every version); set it in a BackendPolicy on the whole Service',
            );
          } else if (resource.kind === 'BackendPolicy' && resource.spec.circuitBreaker !== undefined) {
            at(['spec', 'circuitBreaker'], 'a circuit breaker is per service (it bounds every request to it); set it in a BackendPolicy on the whole Service');
          }
        }
        continue;
      }
      if (ref.kind === 'HTTPRoute' && ref.group === GATEWAY_GROUP) {
        if (resource.kind === 'XBackendTrafficPolicy') {
          at([...path, 'kind'], 'an XBackendTrafficPolicy targets a Service (kind: Service, group: "")');
          continue;
        }
        if (resource.kind === 'BackendPolicy') {
          at([...path, 'kind'], 'a BackendPolicy targets a Service (kind: Service, group: ""), or one version of it with sectionName');
          continue;
        }
        const keys = [...routesByKey.keys()].filter((k) => k.startsWith(`${ns}/`)).map((k) => k.slice(ns.length + 1));
        const route = routesByKey.get(`${ns}/${ref.name}`);
        if (route === undefined) {
          at(
            [...path, 'name'],
            `names HTTPRoute "${ref.name}", which does not exist in namespace ${ns} (routes: ${keys.join(', ') || 'none'})${didYouMean(ref.name, keys)}`,
          );
          continue;
        }
        if (ref.sectionName !== undefined) {
          const ruleNames = route.resource.spec.rules.flatMap((r) => (r.name === undefined ? [] : [r.name]));
          if (!ruleNames.includes(ref.sectionName)) {
            at(
              [...path, 'sectionName'],
              `names rule "${ref.sectionName}", which HTTPRoute "${ref.name}" does not have (named rules: ${ruleNames.join(', ') || 'none'}; name a rule with rules[].name)${didYouMean(ref.sectionName, ruleNames)}`,
            );
          }
        }
        continue;
      }
      at(
        [...path, 'kind'],
        `kind "${ref.kind}" (group "${ref.group}") can't be targeted; name an HTTPRoute (group gateway.networking.k8s.io) or a Service (group "")`,
      );
    }

    if (resource.kind === 'FaultInjection') {
      const abort = resource.spec.abort;
      if (abort !== undefined) {
        if (abort.httpStatus !== undefined && abort.grpcStatus !== undefined) {
          at(['spec', 'abort', 'grpcStatus'], 'give httpStatus or grpcStatus, not both: a request is aborted with one status');
        } else if (abort.httpStatus === undefined && abort.grpcStatus === undefined) {
          at(['spec', 'abort'], 'needs httpStatus (an HTTP status) or grpcStatus (a gRPC status name)');
        }
      }
      if (resource.spec.delay === undefined && abort === undefined) at(['spec'], 'a FaultInjection needs delay, abort or both');
    }
    if (resource.kind === 'BackendPolicy') {
      const lb = resource.spec.loadBalancer;
      const hash = lb?.hashOn;
      const keys = hash === undefined ? [] : Object.keys(hash);
      if (hash !== undefined && keys.length !== 1) {
        at(['spec', 'loadBalancer', 'hashOn'], `needs exactly one of header, cookie or source${keys.length > 1 ? ` (has ${keys.join(' and ')})` : ''}`);
      }
      if (hash !== undefined && lb?.type !== 'RingHash' && lb?.type !== 'Maglev') {
        at(['spec', 'loadBalancer', 'hashOn'], `is used by RingHash and Maglev only; type is ${lb?.type ?? 'PeakEWMA'}`);
      }
      const to = resource.spec.failover?.version;
      if (to !== undefined) {
        for (const ref of resource.spec.targetRefs) {
          if (ref.kind !== 'Service' || ref.group !== '') continue;
          const versions = (index.get(resource.metadata.namespace ?? 'default', ref.name)?.versions ?? []).map((v) => v.name);
          if (versions.length > 0 && !versions.includes(to)) {
            at(
              ['spec', 'failover', 'version'],
              `names version "${to}", which service "${ref.name}" does not have (versions: ${versions.join(', ')})${didYouMean(to, versions)}`,
            );
          }
        }
      }
      const o = resource.spec.outlierDetection;
      if (
        o?.baseEjectionTime !== undefined &&
        o.maxEjectionTime !== undefined &&
        parseGatewayDurationMs(o.baseEjectionTime) > parseGatewayDurationMs(o.maxEjectionTime)
      ) {
        at(['spec', 'outlierDetection', 'baseEjectionTime'], `is ${o.baseEjectionTime}, longer than maxEjectionTime (${o.maxEjectionTime})`);
      }
      if (o?.interval !== undefined && parseGatewayDurationMs(o.interval) === 0) at(['spec', 'outlierDetection', 'interval'], 'must be longer than 0s');
    }
    if (resource.kind === 'XBackendTrafficPolicy') {
      const interval = resource.spec.retryConstraint?.budget?.interval;
      if (interval !== undefined) {
        const ms = parseGatewayDurationMs(interval);
        if (ms < 1000 || ms > 3_600_000) at(['spec', 'retryConstraint', 'budget', 'interval'], `is ${interval}; a budget interval is from 1s to 1h`);
      }
      const rate = resource.spec.retryConstraint?.minRetryRate?.interval;
      if (rate !== undefined && parseGatewayDurationMs(rate) === 0) at(['spec', 'retryConstraint', 'minRetryRate', 'interval'], 'must be longer than 0s');
    }
  }
  return problems;
}
