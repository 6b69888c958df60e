// Checks a proxy's ServiceAccount token with a TokenReview (authentication.k8s.io/v1),
// audience `trellis`: the API server says whose token it is, and the pod's namespace and
// ServiceAccount become the only identity that proxy may ask a certificate for
// (spiffe://<trust-domain>/ns/<ns>/sa/<sa>). A token the server does not authenticate,
// one for another audience, or one that is not a ServiceAccount's, is refused.
import type { KubeConfig } from '@kubernetes/client-node';
import type https from 'node:https';
import { requestJson } from './reflector.js';

/** The audience proxies' projected tokens are minted for. */
export const TOKEN_AUDIENCE = 'trellis';

export type TokenReviewResult =
  | { readonly ok: true; readonly namespace: string; readonly serviceAccount: string }
  | { readonly ok: false; readonly reason: string };

/** Sends one TokenReview and returns its body (tests replace it). */
export type PostTokenReview = (review: unknown) => Promise<unknown>;

export function postTokenReviewWith(kc: KubeConfig): PostTokenReview {
  return async (review) => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const opts: https.RequestOptions = { method: 'POST', headers: { accept: 'application/json' } };
    await kc.applyToHTTPSOptions(opts);
    return requestJson(new URL(`${cluster.server}/apis/authentication.k8s.io/v1/tokenreviews`), opts, review);
  };
}

/** Longest token sent to the API server (projected tokens are ~1 KB). */
const MAX_TOKEN_BYTES = 16 * 1024;
const SA_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;

/** Reviews `token` for `audience`; never throws (a failed review is a refusal naming why). */
export async function reviewToken(post: PostTokenReview, token: string, audience = TOKEN_AUDIENCE): Promise<TokenReviewResult> {
  if (token.length === 0 || Buffer.byteLength(token) > MAX_TOKEN_BYTES) return { ok: false, reason: 'the token is empty or too long' };
  let answer: unknown;
  try {
    answer = await post({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } });
  } catch (err) {
    return { ok: false, reason: `the TokenReview failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  const status = (answer as { status?: { authenticated?: unknown; error?: unknown; audiences?: unknown; user?: { username?: unknown } } }).status;
  if (status?.authenticated !== true)
    return { ok: false, reason: `the API server did not authenticate the token${typeof status?.error === 'string' ? ` (${status.error.slice(0, 200)})` : ''}` };
  // A server that ignores spec.audiences answers without status.audiences: refuse, as the API docs advise.
  if (!Array.isArray(status.audiences) || !status.audiences.includes(audience)) return { ok: false, reason: `the token is not for audience ${audience}` };
  const username = typeof status.user?.username === 'string' ? status.user.username : '';
  const m = SA_USER.exec(username);
  if (!m) return { ok: false, reason: 'the token is not a ServiceAccount token' };
  return { ok: true, namespace: m[1]!, serviceAccount: m[3]! };
}
