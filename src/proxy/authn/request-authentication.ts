// The requestAuthentication layer of the inbound stack (Istio's RequestAuthentication
// semantics): right inside inboundIdentity, so the caller is known, and outside
// authorization, which reads what it decides (`ex.requestAuth`).
// - No token: the request goes on with no end user; an AuthorizationPolicy decides about it.
// - A token no rule verifies: 401 with `WWW-Authenticate: Bearer ... error="invalid_token"`
//   (RFC 6750), through the error table, counted by reason.
// - A verified token: `ex.requestAuth = { principal: 'iss/sub', claims }`, the token stripped
//   before the app unless its rule forwards it (as Istio), and outputClaimToHeaders written.
// Headers a rule writes from claims are always dropped from what the client sent, so the
// app can trust them. Nothing of a token reaches a log line or a metric label.
//
// Cost: a service with no RequestAuthentication pays one call and one check per request.
// With rules, a request without a token pays a scan of its header lines; a token seen
// before (the verdict cache) is answered without a promise or a signature check.
import type { HeaderModifier } from '../filters/header-modifier.js';
import { HeadEdits } from '../filters/head-edits.js';
import { runGuarded, type Exchange } from '../stack/exchange.js';
import type { Layer } from '../stack/layer.js';
import type { AuthnMetrics } from './authn-metrics.js';
import { REFUSAL_TEXT, type Accepted, type FoundToken, type JwtAuthenticator, type Verdict } from './jwt-authenticator.js';

export interface RequestAuthenticationParts {
  /** The rules of the snapshot in force; undefined when none apply to this service. */
  readonly current: () => JwtAuthenticator | undefined;
  readonly metrics: AuthnMetrics;
  /** The realm of `WWW-Authenticate` (this proxy's service). */
  readonly realm: string;
}

export function requestAuthentication(p: RequestAuthenticationParts): Layer {
  return (next) => {
    const settle = (ex: Exchange, a: JwtAuthenticator, found: FoundToken, v: Verdict, hit: boolean): void => {
      if (ex.finished) return;
      if (v.kind === 'refused') {
        p.metrics.refused(v.reason);
        ex.fail('TRELLIS_E_JWT_INVALID', { reason: v.reason, description: REFUSAL_TEXT[v.reason], realm: p.realm });
        return;
      }
      p.metrics.verified(hit);
      ex.requestAuth = v.auth;
      edit(ex, a, found, v);
      next(ex);
    };
    return {
      request(ex) {
        const a = p.current();
        if (a === undefined) return next(ex);
        const found = a.find(ex.req);
        if (found === undefined) {
          if (a.claimHeaders.size > 0) dropClaimHeaders(ex, a);
          return next(ex);
        }
        if (found.kind === 'refused') {
          p.metrics.refused(found.reason);
          return ex.fail('TRELLIS_E_JWT_INVALID', { reason: found.reason, description: REFUSAL_TEXT[found.reason], realm: p.realm });
        }
        const v = a.check(found.token);
        if (!(v instanceof Promise)) return settle(ex, a, found, v, v.kind === 'accepted');
        v.then(
          (verdict) => runGuarded(ex, () => settle(ex, a, found, verdict, false)),
          (err: unknown) =>
            runGuarded(ex, () => {
              throw err;
            }),
        );
      },
    };
  };
}

/** The client's claim headers dropped (a request without a token must not bring its own). */
function dropClaimHeaders(ex: Exchange, a: JwtAuthenticator): void {
  for (const line of ex.req.lines) {
    const colon = line.indexOf(':');
    if (colon > 0 && a.claimHeaders.has(line.slice(0, colon).trim().toLowerCase())) {
      (ex.headEdits ??= new HeadEdits(ex.req)).headers({ drop: a.claimHeaders, append: [] });
      return;
    }
  }
}

/** The request as the app gets it: the token stripped unless forwarded, claim headers replaced. */
function edit(ex: Exchange, a: JwtAuthenticator, found: FoundToken, v: Accepted): void {
  const strip = !v.rule.spec.forwardOriginalToken;
  if (!strip && a.claimHeaders.size === 0) return;
  const edits = (ex.headEdits ??= new HeadEdits(ex.req));
  if (strip && 'param' in found.at) edits.dropQueryParam(found.at.param);
  const drop = strip && 'header' in found.at ? withName(a.claimHeaders, found.at.header) : a.claimHeaders;
  const m: HeaderModifier = { drop, append: v.claimLines };
  edits.headers(m);
}

function withName(names: ReadonlySet<string>, name: string): ReadonlySet<string> {
  if (names.has(name)) return names;
  const out = new Set(names);
  out.add(name);
  return out;
}
