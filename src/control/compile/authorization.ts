// The AuthorizationPolicies one service's sidecar enforces: those of the service's
// namespace without targetRefs (Istio's namespace-wide policy, no selector) and those
// whose targetRefs name the service. Values pass on as written (the proxy compiles them
// into matchers once per snapshot, src/proxy/authz/), but principals lose an optional
// `spiffe://` and ports become numbers, so the proxy reads one form.
import type {
  AuthorizationConditionSnapshot,
  AuthorizationOperationSnapshot,
  AuthorizationPolicySnapshot,
  AuthorizationRuleSnapshot,
  AuthorizationSnapshot,
  AuthorizationSourceSnapshot,
} from '../../api/protocol.js';
import { normalizePrincipal } from '../../api/authorization.js';
import { DEFAULT_NAMESPACE } from '../../api/names.js';
import { DEFAULT_TRUST_DOMAIN } from '../../security/spiffe.js';
import type { AuthorizationPolicyConfig, ControlConfig, ServiceConfig } from '../sources/mesh-config.js';

type RuleConfig = NonNullable<AuthorizationPolicyConfig['spec']['rules']>[number];

/** Whether `policy` applies to `service`: same namespace, and no targets or one naming it. */
export function appliesTo(policy: AuthorizationPolicyConfig, service: ServiceConfig): boolean {
  if ((policy.metadata.namespace ?? DEFAULT_NAMESPACE) !== (service.namespace ?? DEFAULT_NAMESPACE)) return false;
  const refs = policy.spec.targetRefs;
  return refs === undefined || refs.some((r) => r.group === '' && r.kind === 'Service' && r.name === service.name);
}

/** The authorization of `service`'s sidecar; undefined when no policy applies (every caller allowed). */
export function compileAuthorization(config: ControlConfig, service: ServiceConfig | undefined): AuthorizationSnapshot | undefined {
  if (service === undefined) return undefined;
  const policies = (config.authorizationPolicies ?? [])
    .map((p) => p.resource)
    .filter((p) => appliesTo(p, service))
    .map(compilePolicy)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (policies.length === 0) return undefined;
  return { trustDomain: config.identity?.trustDomain ?? DEFAULT_TRUST_DOMAIN, policies };
}

/**
 * The authorization of a Gateway's proxy: the policies that target it (targetRefs kind
 * Gateway, in its namespace); undefined when none does. A policy without targetRefs covers
 * its namespace's services, not its Gateways (the edge's callers are outside the mesh).
 */
export function compileGatewayAuthorization(
  config: ControlConfig,
  gateway: { readonly name: string; readonly namespace: string },
): AuthorizationSnapshot | undefined {
  const policies = (config.authorizationPolicies ?? [])
    .map((p) => p.resource)
    .filter(
      (p) =>
        (p.metadata.namespace ?? DEFAULT_NAMESPACE) === gateway.namespace &&
        (p.spec.targetRefs ?? []).some((r) => r.group === 'gateway.networking.k8s.io' && r.kind === 'Gateway' && r.name === gateway.name),
    )
    .map(compilePolicy)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (policies.length === 0) return undefined;
  return { trustDomain: config.identity?.trustDomain ?? DEFAULT_TRUST_DOMAIN, policies };
}

function compilePolicy(p: AuthorizationPolicyConfig): AuthorizationPolicySnapshot {
  const out: AuthorizationPolicySnapshot = {
    name: `${p.metadata.namespace ?? DEFAULT_NAMESPACE}/${p.metadata.name}`,
    action: p.spec.action ?? 'ALLOW',
    rules: (p.spec.rules ?? []).map(compileRule),
  };
  if (p.spec.dryRun === true) out.dryRun = true;
  return out;
}

function compileRule(r: RuleConfig): AuthorizationRuleSnapshot {
  const out: AuthorizationRuleSnapshot = {};
  if (r.from !== undefined) {
    out.from = r.from.map(({ source: s }) => {
      const src: AuthorizationSourceSnapshot = {};
      if (s.principals) src.principals = s.principals.map(normalizePrincipal);
      if (s.notPrincipals) src.notPrincipals = s.notPrincipals.map(normalizePrincipal);
      if (s.namespaces) src.namespaces = [...s.namespaces];
      if (s.notNamespaces) src.notNamespaces = [...s.notNamespaces];
      if (s.requestPrincipals) src.requestPrincipals = [...s.requestPrincipals];
      if (s.notRequestPrincipals) src.notRequestPrincipals = [...s.notRequestPrincipals];
      return src;
    });
  }
  if (r.to !== undefined) {
    out.to = r.to.map(({ operation: o }) => {
      const op: AuthorizationOperationSnapshot = {};
      if (o.hosts) op.hosts = [...o.hosts];
      if (o.notHosts) op.notHosts = [...o.notHosts];
      if (o.ports) op.ports = o.ports.map(Number);
      if (o.notPorts) op.notPorts = o.notPorts.map(Number);
      if (o.methods) op.methods = [...o.methods];
      if (o.notMethods) op.notMethods = [...o.notMethods];
      if (o.paths) op.paths = [...o.paths];
      if (o.notPaths) op.notPaths = [...o.notPaths];
      return op;
    });
  }
  if (r.when !== undefined) {
    out.when = r.when.map((c) => {
      const cond: AuthorizationConditionSnapshot = { key: c.key };
      // A principal in a condition takes the same form as in `principals`.
      const norm = c.key === 'source.principal' ? normalizePrincipal : (v: string) => v;
      if (c.values) cond.values = c.values.map(norm);
      if (c.notValues) cond.notValues = c.notValues.map(norm);
      return cond;
    });
  }
  return out;
}
