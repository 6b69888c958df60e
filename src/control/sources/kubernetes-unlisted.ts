// Fail closed on the security kinds (`trellis control --kubernetes`): a kind the API will
// not list (RBAC 403, a CRD not installed 404, errors) is served as empty after the start
// timeout, which for AuthorizationPolicy, PeerAuthentication and RequestAuthentication
// would fail open: a snapshot without the AuthorizationPolicies that exist allows every
// caller. So while one of them has never listed, proxies are refused at hello
// (TRELLIS_E_KUBERNETES_UNLISTED; they retry with backoff), the gauge
// trellis_control_kubernetes_kind_unlisted says which, and `trellis check` names the
// kind and the likely cause. Once a kind listed, a broken watch keeps its last good list
// (the reflector's store), as client-go's informers do. Other kinds keep serving empty.
import type { KubernetesUnlistedKind } from '../../api/admin.js';

/** The kinds a proxy may not be served without: a fixed list (the gauge's labels). */
export const SECURITY_KINDS = ['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication'] as const;

const SECURITY: ReadonlySet<string> = new Set(SECURITY_KINDS);

/** The state of one reflector this module reads. */
export interface ListedKind {
  readonly kind: string;
  readonly synced: boolean;
  readonly lastFailure?: { readonly statusCode?: number; readonly message: string };
}

/** The security kinds among `reflectors` that have never listed, with their likely cause; in SECURITY_KINDS order. */
export function unlistedSecurityKinds(reflectors: Iterable<ListedKind>): KubernetesUnlistedKind[] {
  const out: KubernetesUnlistedKind[] = [];
  for (const r of reflectors) {
    if (!SECURITY.has(r.kind) || r.synced) continue;
    const statusCode = r.lastFailure?.statusCode;
    out.push({
      kind: r.kind,
      cause: statusCode === 403 ? 'rbac' : statusCode === 404 ? 'crd-missing' : r.lastFailure ? 'error' : 'pending',
      ...(statusCode !== undefined ? { statusCode } : {}),
      ...(r.lastFailure ? { message: r.lastFailure.message } : {}),
    });
  }
  return out.sort((a, b) => SECURITY_KINDS.indexOf(a.kind as never) - SECURITY_KINDS.indexOf(b.kind as never));
}

/** What an operator does about one unlisted kind: one sentence naming the kind and the likely cause. */
export function describeUnlisted(u: KubernetesUnlistedKind): string {
  const plural = `${u.kind.toLowerCase().replace(/y$/, 'ie')}s.trellis.dev`;
  switch (u.cause) {
    case 'rbac':
      return `${u.kind} cannot be listed: 403 Forbidden, RBAC: the control plane's ServiceAccount may not list and watch ${plural} (ClusterRole trellis-control; trellis install | kubectl apply -f -)`;
    case 'crd-missing':
      return `${u.kind} cannot be listed: 404 Not Found, its CRD ${plural} is not installed (trellis install | kubectl apply -f -)`;
    case 'error':
      return `${u.kind} cannot be listed: ${u.message ?? 'the API answered an error'}`;
    default:
      return `${u.kind} has not been listed yet`;
  }
}
