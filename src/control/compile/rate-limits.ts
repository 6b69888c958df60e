// RateLimitPolicies → the `rateLimits` of a sidecar's snapshot: the limits on its own
// service, durations in ms and defaults filled, so the proxy parses no config. A policy
// applies to a service it targets, to every service of its namespace when it has no
// targetRefs, and through a route (or one rule) it targets to the requests that rule
// takes: the snapshot then carries the service's producer route table (matches only),
// which the inbound side matches as the callers' sidecars do.
import { parseGatewayDurationMs } from '../../config/duration.js';
import { DEFAULT_NAMESPACE } from '../../api/names.js';
import type { Protocol, RateLimitSnapshot, RateLimitsSnapshot, RouteEntry } from '../../api/protocol.js';
import { keyOf, type ControlConfig, type RateLimitPolicyConfig, type ServiceConfig } from '../sources/mesh-config.js';
import { compileRoutes } from './routes.js';

/** Keyed limits track this many keys unless `maxKeys` says otherwise (the schema's default). */
const DEFAULT_MAX_KEYS = 10_000;
const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** The route entry names of `routeName` (one rule: `ruleIndex`) in a route table. */
function entryNames(table: readonly RouteEntry[], ns: string, routeName: string, ruleIndex: number | undefined): string[] {
  const prefix = `${ns}/${routeName}/rule/`;
  const names = new Set<string>();
  for (const e of table) {
    if (!e.name.startsWith(prefix)) continue;
    if (ruleIndex === undefined || e.name === `${prefix}${ruleIndex}`) names.add(e.name);
  }
  return [...names];
}

/**
 * Which requests of `service` a policy covers: 'all', the route entry names it names, or
 * undefined when it does not apply to the service.
 */
function coverage(policy: RateLimitPolicyConfig, service: ServiceConfig, config: ControlConfig, table: () => RouteEntry[]): 'all' | string[] | undefined {
  const ns = policy.metadata.namespace ?? DEFAULT_NAMESPACE;
  if (ns !== (service.namespace ?? DEFAULT_NAMESPACE)) return undefined;
  const refs = policy.spec.targetRefs;
  if (refs === undefined) return 'all';
  const names: string[] = [];
  for (const ref of refs) {
    if (ref.kind === 'Service' && ref.group === '' && ref.name === service.name) return 'all';
    if ((ref.kind === 'HTTPRoute' || ref.kind === 'GRPCRoute') && ref.group === GATEWAY_GROUP) {
      const route = config.routes.find(
        (r) => r.resource.kind === ref.kind && r.resource.metadata.name === ref.name && (r.resource.metadata.namespace ?? DEFAULT_NAMESPACE) === ns,
      )?.resource;
      if (route === undefined || route.kind === 'TCPRoute') continue;
      const rules = route.spec.rules as readonly { readonly name?: string }[];
      const ruleIndex = ref.sectionName === undefined ? undefined : rules.findIndex((r) => r.name === ref.sectionName);
      if (ruleIndex === -1) continue;
      names.push(...entryNames(table(), ns, ref.name, ruleIndex));
    }
  }
  return names.length > 0 ? [...new Set(names)].sort() : undefined;
}

type LimitConfig = RateLimitPolicyConfig['spec']['limits'][number];

/** One limit of a policy, as a proxy counts it (every request it sees, until `routes` narrows it). */
function limitSnapshot(p: RateLimitPolicyConfig, l: LimitConfig): RateLimitSnapshot {
  const ns = p.metadata.namespace ?? DEFAULT_NAMESPACE;
  const out: RateLimitSnapshot = {
    id: `${ns}/${p.metadata.name}/${l.name}`,
    policy: `${ns}/${p.metadata.name}`,
    name: l.name,
    requests: l.requests,
    intervalMs: parseGatewayDurationMs(l.interval),
    burst: l.burst ?? l.requests,
  };
  if (l.key?.header !== undefined) out.key = { header: l.key.header.toLowerCase() };
  else if (l.key?.source !== undefined) out.key = { source: true };
  if (out.key !== undefined) out.maxKeys = l.maxKeys ?? DEFAULT_MAX_KEYS;
  if (l.global === true && out.key === undefined) out.global = true;
  if (p.spec.responseHeaders === true) out.responseHeaders = true;
  return out;
}

/**
 * The rate limits of a Gateway's proxy: the limits of the policies that target it
 * (targetRefs kind Gateway, in its namespace), over every request it takes; undefined
 * when none does. A policy without targetRefs covers its namespace's services, not its
 * Gateways: the edge is limited only where a policy says so.
 */
export function compileGatewayRateLimits(
  config: ControlConfig,
  gateway: { readonly name: string; readonly namespace: string },
): RateLimitsSnapshot | undefined {
  const limits: RateLimitSnapshot[] = [];
  for (const { resource: p } of config.rateLimitPolicies ?? []) {
    if ((p.metadata.namespace ?? DEFAULT_NAMESPACE) !== gateway.namespace) continue;
    if (!(p.spec.targetRefs ?? []).some((r) => r.kind === 'Gateway' && r.group === GATEWAY_GROUP && r.name === gateway.name)) continue;
    for (const l of p.spec.limits) limits.push(limitSnapshot(p, l));
  }
  return limits.length === 0 ? undefined : { limits };
}

/** The rate limits of the service `key` for its sidecars; undefined when no policy applies. */
export function compileRateLimits(config: ControlConfig, key: string): RateLimitsSnapshot | undefined {
  const policies = config.rateLimitPolicies;
  if (policies === undefined || policies.length === 0) return undefined;
  const service = config.services.find((s) => keyOf(s) === key);
  if (service === undefined) return undefined;
  const protocol: Protocol = service.ports?.[0]?.protocol ?? service.protocol;
  if (protocol === 'tcp') return undefined;
  let routes: RouteEntry[] | undefined;
  // The producer routes (the service's own namespace), first port: what every caller without consumer routes gets.
  const table = (): RouteEntry[] =>
    (routes ??= compileRoutes(key, config.routes, protocol, undefined, {
      caller: service.namespace ?? DEFAULT_NAMESPACE,
      ...(service.ports?.[0] !== undefined ? { port: service.ports[0].port } : {}),
    }));
  const limits: RateLimitSnapshot[] = [];
  let routed = false;
  for (const { resource: p } of policies) {
    const covers = coverage(p, service, config, table);
    if (covers === undefined) continue;
    for (const l of p.spec.limits) {
      const out = limitSnapshot(p, l);
      if (covers !== 'all') {
        out.routes = covers;
        routed = true;
      }
      limits.push(out);
    }
  }
  if (limits.length === 0) return undefined;
  if (!routed) return { limits };
  // Matches only: the inbound side needs to know the rule, not where it sends.
  return {
    limits,
    routes: table().map((e) => ({ name: e.name, ...(e.hostname !== undefined ? { hostname: e.hostname } : {}), match: e.match, backends: [] })),
  };
}
