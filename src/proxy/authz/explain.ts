// What a service's inbound sidecar would make of a request from a given caller, without
// one being sent (`POST /explain/inbound` on its admin server; the authorization part of
// `trellis explain`): the RequestAuthentication verdict on the request's token, then the
// AuthorizationPolicy engine's decision, dry run and audits, from the snapshot in force.
// It runs the request path's own pieces (the authenticator, the engine), never a copy.
import type { MtlsMode } from '../../api/protocol.js';
import type { AuthorizationExplainView } from '../../api/views.js';
import { parseSpiffeId, spiffeId, type WorkloadName } from '../../security/spiffe.js';
import { REFUSAL_TEXT, type JwtAuthenticator } from '../authn/jwt-authenticator.js';
import { parseExplainRequest, requestHead, type ExplainRequest } from '../routing/explain.js';
import type { RequestAuth } from '../stack/exchange.js';
import { principalOf, type AuthzEngine } from './engine.js';

/** A request to judge, and who sends it. */
export interface InboundExplainRequest extends ExplainRequest {
  /** The caller's SPIFFE ID (or principal, without `spiffe://`); null: a caller with no certificate. */
  readonly caller: WorkloadName | null;
  /** The service port it arrives on (a multi-port service's); absent: the service's first. */
  readonly port: number | undefined;
}

/** What explaining reads of the sidecar: the snapshot's engine and authenticator, its ports and their mTLS modes. */
export interface InboundExplainSource {
  readonly proxy: string;
  readonly engine: AuthzEngine;
  readonly authenticator: JwtAuthenticator | undefined;
  /** The port policies name for `port` (absent: the default); undefined when this sidecar serves no such port. */
  readonly portOf: (port: number | undefined) => number | undefined;
  readonly mode: (port: number) => MtlsMode;
}

/** Checks a body for `POST /explain/inbound` (anything else is a reason string). */
export function parseInboundExplainRequest(body: unknown): InboundExplainRequest | string {
  const r = parseExplainRequest(body);
  if (typeof r === 'string') return r;
  const b = body as Record<string, unknown>;
  let caller: WorkloadName | null = null;
  if (b.caller !== undefined && b.caller !== null) {
    if (typeof b.caller !== 'string' || b.caller.length > 512) return 'caller must be a SPIFFE ID or null';
    const parsed = parseSpiffeId(b.caller.startsWith('spiffe://') ? b.caller : `spiffe://${b.caller}`);
    if (parsed === undefined) return 'caller must be a SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service>) or null';
    caller = parsed;
  }
  let port: number | undefined;
  if (b.port !== undefined) {
    if (typeof b.port !== 'number' || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) return 'port must be a port number';
    port = b.port;
  }
  return { ...r, caller, port };
}

/** Judges `r` as this sidecar's inbound stack would: authentication first (a refusal is a 401 before any policy), then authorization. */
export async function explainInbound(src: InboundExplainSource, r: InboundExplainRequest): Promise<AuthorizationExplainView | string> {
  const port = src.portOf(r.port);
  if (port === undefined) return `this sidecar serves no port ${r.port}`;
  const head = requestHead(r);
  let authentication: AuthorizationExplainView['authentication'];
  let auth: RequestAuth | undefined;
  const a = src.authenticator;
  if (a !== undefined) {
    const found = a.find(head);
    if (found === undefined) authentication = { result: 'no-token' };
    else if (found.kind === 'refused') authentication = { result: 'refused', reason: found.reason, description: REFUSAL_TEXT[found.reason] };
    else {
      const v = await a.check(found.token);
      if (v.kind === 'refused') authentication = { result: 'refused', reason: v.reason, description: REFUSAL_TEXT[v.reason] };
      else {
        auth = v.auth;
        // The principal is iss/sub (config-shaped, no token); claims stay out of the view.
        authentication = { result: 'verified', principal: v.auth.principal };
      }
    }
  }
  const caller = r.caller ?? undefined;
  const e = src.engine.explain(caller, port, head, auth);
  return {
    proxy: src.proxy,
    caller: caller === undefined ? null : spiffeId(caller),
    port,
    mtls: src.mode(port),
    policies: !src.engine.empty,
    decision: e.decision,
    ...(e.policy !== undefined ? { policy: e.policy } : {}),
    ...(e.action !== undefined ? { action: e.action } : {}),
    reason: reasonOf(e, caller),
    ...(e.dryRun !== undefined ? { dryRun: e.dryRun } : {}),
    audited: e.audited,
    ...(authentication !== undefined ? { authentication } : {}),
  };
}

function reasonOf(e: ReturnType<AuthzEngine['explain']>, caller: WorkloadName | undefined): string {
  const who = caller === undefined ? 'a caller with no certificate (no principal, no namespace)' : principalOf(caller);
  if (e.decision === 'deny') {
    return e.action === 'DENY' ? `the DENY policy ${e.policy} matches ${who}` : `no rule of the ALLOW policies (${e.policy}) matches ${who}`;
  }
  if (e.policy !== undefined) return `the ALLOW policy ${e.policy} matches ${who}`;
  return 'no ALLOW policy applies and no DENY policy matches';
}
