// RequestAuthentication → the JWT rules of one proxy's own service. Every policy of the
// service's namespace that targets it, or targets nothing (the whole namespace), adds
// its rules, in file order: Istio merges the RequestAuthentications that select a
// workload the same way, and a token is then checked against the rule of its issuer.
//
// Key sets from `jwks` and `jwksFile` travel in the snapshot as text (the loader read the
// file). A `jwksUri` travels as the URL, and each proxy fetches it itself, off the
// request path. Why the proxy and not the control plane: a key rotation must reach the
// verifier within a refresh, and an unknown `kid` must trigger a refetch right where it
// was seen, without a recompile and a snapshot push to every proxy (Istio's istiod mode
// refreshes every 20 minutes, and on a failed fetch distributes a fake key set that
// rejects every token: istio/istio#24629, #25934); the control plane stays off every
// path a request depends on (DESIGN.md), and the URL is fetched from where tokens are checked.
import type { JwtLocation, JwtRuleSnapshot, RequestAuthenticationSnapshot } from '../../api/protocol.js';
import { DEFAULT_NAMESPACE, splitServiceKey } from '../../api/names.js';
import { parseDurationMs } from '../../config/duration.js';
import { DEFAULT_JWT_ALGORITHMS } from '../../config/schema/request-authentication.js';
import type { ControlConfig, RequestAuthenticationConfig } from '../sources/mesh-config.js';

/** Envoy's default clock skew (jwt_authn clock_skew_seconds). */
export const DEFAULT_CLOCK_SKEW_MS = 60_000;
/** Tokens longer than this are refused before they are parsed. */
export const DEFAULT_MAX_TOKEN_BYTES = 8192;
/** Envoy's remote JWKS cache_duration default. */
export const DEFAULT_JWKS_REFRESH_MS = 300_000;
/** How long a jwksUri's last keys stay in use while it cannot be fetched. */
export const DEFAULT_JWKS_MAX_STALE_MS = 86_400_000;
/** Istio's and Envoy's default location: `Authorization: Bearer <token>`. */
const DEFAULT_FROM: readonly JwtLocation[] = [{ header: 'authorization', prefix: 'Bearer ' }];

/** Whether `policy` applies to the service `name` of namespace `namespace`. */
function appliesTo(policy: RequestAuthenticationConfig, namespace: string, name: string): boolean {
  if ((policy.metadata.namespace ?? DEFAULT_NAMESPACE) !== namespace) return false;
  const refs = policy.spec.targetRefs;
  return refs === undefined || refs.some((r) => r.group === '' && r.kind === 'Service' && r.name === name);
}

/** The JWT rules for the service whose key is `serviceKey`; undefined when no policy applies. */
export function compileRequestAuthentication(config: ControlConfig, key: string): RequestAuthenticationSnapshot | undefined {
  const { name, namespace } = splitServiceKey(key);
  const rules: JwtRuleSnapshot[] = [];
  for (const { resource, jwks } of config.requestAuthentications ?? []) {
    if (!appliesTo(resource, namespace, name)) continue;
    const policy = `${resource.metadata.namespace ?? DEFAULT_NAMESPACE}/${resource.metadata.name}`;
    resource.spec.jwtRules.forEach((r, i) => {
      const from: JwtLocation[] = [
        ...(r.fromHeaders ?? []).map((h) => ({ header: h.name.toLowerCase(), prefix: h.prefix ?? '' })),
        ...(r.fromParams ?? []).map((param) => ({ param })),
      ];
      const keys = jwks[i];
      const out: JwtRuleSnapshot = {
        policy,
        issuer: r.issuer,
        from: from.length > 0 ? from : [...DEFAULT_FROM],
        forwardOriginalToken: r.forwardOriginalToken ?? false,
        algorithms: [...(r.algorithms ?? DEFAULT_JWT_ALGORITHMS)],
        clockSkewMs: r.clockSkew === undefined ? DEFAULT_CLOCK_SKEW_MS : parseDurationMs(r.clockSkew),
        maxTokenBytes: r.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES,
      };
      if (r.audiences !== undefined && r.audiences.length > 0) out.audiences = [...r.audiences];
      if (keys !== undefined) out.jwks = keys;
      else if (r.jwksUri !== undefined) {
        out.jwksUri = r.jwksUri;
        out.jwksRefreshMs = r.jwksRefreshInterval === undefined ? DEFAULT_JWKS_REFRESH_MS : parseDurationMs(r.jwksRefreshInterval);
        out.jwksMaxStaleMs = r.jwksMaxStale === undefined ? DEFAULT_JWKS_MAX_STALE_MS : parseDurationMs(r.jwksMaxStale);
      }
      if (r.outputClaimToHeaders !== undefined && r.outputClaimToHeaders.length > 0)
        out.outputClaimToHeaders = r.outputClaimToHeaders.map((o) => ({ header: o.header.toLowerCase(), claim: o.claim }));
      rules.push(out);
    });
  }
  return rules.length > 0 ? { rules } : undefined;
}
