// Timeouts, retries, faults and retry budgets → the fields of RouteEntry and
// UpstreamSnapshot. Durations become milliseconds and defaults are filled here, so a
// proxy never parses config. Which policy applies: one that names the rule
// (sectionName) before one that names the whole route; among equals, the first in
// file order. A FaultInjection on a Service goes on the upstream and covers the
// routes that have none of their own.
import { parseGatewayDurationMs } from '../../config/duration.js';
import { DEFAULT_NAMESPACE, serviceKey, splitServiceKey } from '../../api/names.js';
import type { HTTPRouteConfig, HTTPRouteRuleConfig, PolicyConfig, PolicyTargetConfig } from '../sources/mesh-config.js';
import {
  DEFAULT_BALANCING,
  DEFAULT_OUTLIER_DETECTION,
  DEFAULT_RETRY_BUDGET,
  type BalancingConfig,
  type FaultConfig,
  type RetryBudgetConfig,
  type RetryConfig,
  type RouteEntry,
  type RouteTimeouts,
} from '../../api/protocol.js';

/** Defaults of a retry stanza and of the RetryPolicy fields. */
export const RETRY_DEFAULTS = { attempts: 1, backoffMs: 25, maxBodyBytes: 64 * 1024 } as const;

/** gRPC status names in numeric order (OK = 0 ... UNAUTHENTICATED = 16). */
const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

type Policies = readonly { readonly resource: PolicyConfig }[] | undefined;

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** 1 when `ref` names the rule, 2 when it names the whole route, 0 when neither. */
function routeTargetRank(ref: PolicyTargetConfig, route: HTTPRouteConfig, rule: HTTPRouteRuleConfig, policyNs: string): number {
  if (ref.kind !== 'HTTPRoute' || ref.group !== GATEWAY_GROUP || ref.name !== route.metadata.name) return 0;
  if (policyNs !== (route.metadata.namespace ?? 'default')) return 0;
  if (ref.sectionName === undefined) return 2;
  return ref.sectionName === rule.name ? 1 : 0;
}

function policyFor<K extends PolicyConfig['kind']>(
  policies: Policies,
  kind: K,
  route: HTTPRouteConfig,
  rule: HTTPRouteRuleConfig,
): Extract<PolicyConfig, { kind: K }> | undefined {
  let best: PolicyConfig | undefined;
  let bestRank = 3;
  for (const { resource: p } of policies ?? []) {
    if (p.kind !== kind) continue;
    const ns = p.metadata.namespace ?? 'default';
    for (const ref of p.spec.targetRefs) {
      const rank = routeTargetRank(ref, route, rule, ns);
      if (rank !== 0 && rank < bestRank) {
        best = p;
        bestRank = rank;
      }
    }
  }
  return best as Extract<PolicyConfig, { kind: K }> | undefined;
}

/**
 * True when `ref` of a policy in namespace `policyNs` names the Service whose key is
 * `service`, and the version `section` (undefined: the whole Service). A policy targets
 * Services of its own namespace only (LocalPolicyTargetReference).
 */
function targetsService(ref: PolicyTargetConfig, policyNs: string | undefined, service: string, section: string | undefined): boolean {
  const { name, namespace } = splitServiceKey(service);
  return ref.kind === 'Service' && ref.group === '' && ref.name === name && ref.sectionName === section && (policyNs ?? DEFAULT_NAMESPACE) === namespace;
}

function servicePolicy<K extends PolicyConfig['kind']>(policies: Policies, kind: K, service: string): Extract<PolicyConfig, { kind: K }> | undefined {
  return (policies ?? [])
    .map((p) => p.resource)
    .find((p) => p.kind === kind && p.spec.targetRefs.some((r) => targetsService(r, p.metadata.namespace, service, undefined))) as
    | Extract<PolicyConfig, { kind: K }>
    | undefined;
}

function compileFault(p: Extract<PolicyConfig, { kind: 'FaultInjection' }>): FaultConfig {
  const out: FaultConfig = { policy: `${p.metadata.namespace ?? 'default'}/${p.metadata.name}` };
  if (p.spec.delay) out.delay = { ms: parseGatewayDurationMs(p.spec.delay.fixedDelay), percent: p.spec.delay.percent };
  const a = p.spec.abort;
  if (a) {
    out.abort =
      a.grpcStatus !== undefined
        ? { grpcStatus: Math.max(0, GRPC_CODES.indexOf(a.grpcStatus)), percent: a.percent }
        : { httpStatus: a.httpStatus ?? 503, percent: a.percent };
  }
  return out;
}

function compileTimeouts(rule: HTTPRouteRuleConfig): RouteTimeouts | undefined {
  const t = rule.timeouts;
  if (t === undefined) return undefined;
  const out: RouteTimeouts = {};
  // "0s" disables a timeout (Gateway API), the same as leaving it out.
  const request = t.request === undefined ? 0 : parseGatewayDurationMs(t.request);
  const backend = t.backendRequest === undefined ? 0 : parseGatewayDurationMs(t.backendRequest);
  if (request > 0) out.requestMs = request;
  if (backend > 0) out.backendRequestMs = backend;
  return request > 0 || backend > 0 ? out : undefined;
}

/** The timeouts, retry and fault fields of the entries of one rule. */
export function ruleResilience(route: HTTPRouteConfig, rule: HTTPRouteRuleConfig, policies: Policies): Pick<RouteEntry, 'timeouts' | 'retry' | 'fault'> {
  const out: Pick<RouteEntry, 'timeouts' | 'retry' | 'fault'> = {};
  const timeouts = compileTimeouts(rule);
  if (timeouts) out.timeouts = timeouts;
  if (rule.retry !== undefined) {
    const safety = policyFor(policies, 'RetryPolicy', route, rule);
    const retry: RetryConfig = {
      codes: [...(rule.retry.codes ?? [])].sort((a, b) => a - b),
      attempts: rule.retry.attempts ?? RETRY_DEFAULTS.attempts,
      backoffMs: rule.retry.backoff === undefined ? RETRY_DEFAULTS.backoffMs : parseGatewayDurationMs(rule.retry.backoff),
      nonIdempotent: safety?.spec.retryNonIdempotent ?? false,
      maxBodyBytes: safety?.spec.maxBufferedBodyBytes ?? RETRY_DEFAULTS.maxBodyBytes,
    };
    if (retry.attempts > 0) out.retry = retry;
  }
  const fault = policyFor(policies, 'FaultInjection', route, rule);
  if (fault) out.fault = compileFault(fault);
  return out;
}

// The service functions below take the Service's key (src/api/names.ts).

/** The FaultInjection that targets a Service, compiled; undefined when none. */
export function serviceFault(service: string, policies: Policies): FaultConfig | undefined {
  const p = servicePolicy(policies, 'FaultInjection', service);
  return p === undefined ? undefined : compileFault(p);
}

/** The retry budget of a Service from its XBackendTrafficPolicy; undefined: the default. */
export function serviceRetryBudget(service: string, policies: Policies): RetryBudgetConfig | undefined {
  const c = servicePolicy(policies, 'XBackendTrafficPolicy', service)?.spec.retryConstraint;
  if (c === undefined) return undefined;
  const d = DEFAULT_RETRY_BUDGET;
  return {
    percent: c.budget?.percent ?? d.percent,
    windowMs: c.budget?.interval === undefined ? d.windowMs : parseGatewayDurationMs(c.budget.interval),
    minRetries: c.minRetryRate?.count ?? d.minRetries,
    minIntervalMs: c.minRetryRate?.interval === undefined ? d.minIntervalMs : parseGatewayDurationMs(c.minRetryRate.interval),
  };
}

function compileBalancing(p: Extract<PolicyConfig, { kind: 'BackendPolicy' }>, withOutliers: boolean): BalancingConfig {
  const out: BalancingConfig = {
    policy: `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`,
    balancer: p.spec.loadBalancer?.type ?? DEFAULT_BALANCING.balancer,
    panicThreshold: p.spec.panicThreshold ?? DEFAULT_BALANCING.panicThreshold,
  };
  const h = p.spec.loadBalancer?.hashOn;
  if (h?.header !== undefined) out.hashOn = { header: h.header.toLowerCase() };
  else if (h?.cookie !== undefined) out.hashOn = { cookie: h.cookie };
  else if (h?.source !== undefined) out.hashOn = { source: true };
  const cb = p.spec.circuitBreaker;
  if (withOutliers && cb !== undefined)
    out.circuitBreaker = {
      maxConnections: cb.maxConnections ?? 1024,
      maxPendingRequests: cb.maxPendingRequests ?? 1024,
      maxRequests: cb.maxRequests ?? 1024,
      maxRetries: cb.maxRetries ?? 3,
    };
  const o = p.spec.outlierDetection;
  if (withOutliers && o?.enabled !== false) {
    const d = DEFAULT_OUTLIER_DETECTION;
    const ms = (v: string | undefined, def: number): number => (v === undefined ? def : parseGatewayDurationMs(v));
    out.outlierDetection = {
      consecutive5xx: o?.consecutive5xx ?? d.consecutive5xx,
      consecutiveGatewayFailure: o?.consecutiveGatewayFailure ?? d.consecutiveGatewayFailure,
      intervalMs: ms(o?.interval, d.intervalMs),
      baseEjectionTimeMs: ms(o?.baseEjectionTime, d.baseEjectionTimeMs),
      maxEjectionTimeMs: ms(o?.maxEjectionTime, d.maxEjectionTimeMs),
      maxEjectionPercent: o?.maxEjectionPercent ?? d.maxEjectionPercent,
      successRateMinimumHosts: o?.successRateMinimumHosts ?? d.successRateMinimumHosts,
      successRateRequestVolume: o?.successRateRequestVolume ?? d.successRateRequestVolume,
      successRateStdevFactor: o?.successRateStdevFactor ?? d.successRateStdevFactor,
      failurePercentageThreshold: o?.failurePercentageThreshold ?? d.failurePercentageThreshold,
      failurePercentageMinimumHosts: o?.failurePercentageMinimumHosts ?? d.failurePercentageMinimumHosts,
      failurePercentageRequestVolume: o?.failurePercentageRequestVolume ?? d.failurePercentageRequestVolume,
    };
  }
  return out;
}

/**
 * The BackendPolicy of a Service (the first in file order), compiled; undefined when
 * none, which the proxy reads as the defaults (PeakEWMA, Envoy's outlier detection).
 */
export function serviceBalancing(service: string, policies: Policies): BalancingConfig | undefined {
  const p = servicePolicy(policies, 'BackendPolicy', service);
  return p === undefined ? undefined : compileBalancing(p, true);
}

/** The BackendPolicy naming one version of a Service (sectionName), compiled; undefined when none. */
export function versionBalancing(service: string, version: string, policies: Policies): BalancingConfig | undefined {
  const p = (policies ?? [])
    .map((x) => x.resource)
    .find((x) => x.kind === 'BackendPolicy' && x.spec.targetRefs.some((r) => targetsService(r, x.metadata.namespace, service, version))) as
    | Extract<PolicyConfig, { kind: 'BackendPolicy' }>
    | undefined;
  // Outlier detection is per service (one detector sees every version): a version's policy balances only.
  return p === undefined ? undefined : compileBalancing(p, false);
}

/**
 * The backend a version's requests fail over to when none of its endpoints can take
 * them: a BackendPolicy's `failover` on the version (or else on the Service) decides;
 * by default the whole service (its other versions). Undefined: no failover.
 */
export function versionFailover(service: string, version: string, policies: Policies): string | undefined {
  const onVersion = (policies ?? [])
    .map((x) => x.resource)
    .find(
      (x) =>
        x.kind === 'BackendPolicy' && x.spec.failover !== undefined && x.spec.targetRefs.some((r) => targetsService(r, x.metadata.namespace, service, version)),
    ) as Extract<PolicyConfig, { kind: 'BackendPolicy' }> | undefined;
  const f = onVersion?.spec.failover ?? servicePolicy(policies, 'BackendPolicy', service)?.spec.failover;
  if (f?.enabled === false) return undefined;
  if (f?.version !== undefined && f.version !== version) {
    const { name, namespace } = splitServiceKey(service);
    return serviceKey(`${name}-${f.version}`, namespace);
  }
  return service;
}
