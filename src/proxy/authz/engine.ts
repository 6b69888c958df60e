// The authorization engine of one snapshot: the AuthorizationPolicies of the proxy's own
// service compiled once (match.ts), then asked per HTTP request (L7) or per accepted TCP
// connection (L4). One engine for both, so the two can't disagree on what a rule means.
//
// Istio's semantics, exactly (security.istio.io AuthorizationPolicy):
//   1. a DENY policy that matches refuses (DENY is evaluated first and wins);
//   2. no ALLOW policy: allowed;
//   3. an ALLOW policy that matches: allowed;
//   4. otherwise refused (a service with any ALLOW policy refuses what none allows).
// AUDIT policies change nothing; a match is counted and logged. A policy matches when
// one of its rules does; a policy without rules matches nothing (so `spec: {}`, an
// ALLOW without rules, allows nothing), and an empty rule (`rules: [{}]`) matches
// everything. A rule matches when one `from` source, one `to` operation and every `when`
// condition match (each absent: anything). An unknown caller (no peer) has principal and
// namespace '' — `principals: ["*"]` needs a known one; `notPrincipals` lets it through.
//
// At L4 only the caller and the port exist. Istio: an ALLOW (or AUDIT) rule that names
// an HTTP-only field (methods, paths, hosts, requestPrincipals, request.* keys) never
// matches a TCP connection; in a DENY rule those fields count as matching, so a DENY
// meant for HTTP refuses TCP connections more, never less.
//
// Dry run (`spec.dryRun: true`, Istio's `istio.io/dry-run` annotation): the policy is left
// out of the enforced decision; when the decision with it would refuse what the
// enforced one lets through, the exchange is logged and counted as `dry-run-denied`.
import { isHttpOnlyKey, parseConditionKey, type ConditionKey } from '../../api/authorization.js';
import type { AuthorizationPolicySnapshot, AuthorizationSnapshot } from '../../api/protocol.js';
import type { WorkloadName } from '../../security/spiffe.js';
import type { AuthzNote, Exchange, RequestAuth } from '../stack/exchange.js';
import type { RequestHead } from '../../http1/http1-parser.js';
import { hostOf, ListMatcher, normalizePath, portSet } from './match.js';

type Action = AuthorizationPolicySnapshot['action'];

/** What the engine says of an exchange or connection (made once per snapshot): a refusal, a dry-run refusal or an audit. */
export type Verdict = AuthzNote;

/** What of a request the engine reads: the exchange's head, or a request `trellis explain` describes. */
export type AuthzRequest = Pick<RequestHead, 'method' | 'path' | 'host' | 'lines'>;

/** What a request (or a connection, without the HTTP part) is matched on. */
class Attributes {
  principal = '';
  namespace = '';
  port = 0;
  /** False for a TCP connection. */
  http = false;
  req: AuthzRequest | undefined = undefined;
  auth: RequestAuth | undefined = undefined;
  #path: string | undefined;
  #host: string | undefined;
  #authority: string | undefined;

  reset(peer: WorkloadName | undefined, port: number, req: AuthzRequest | undefined, auth: RequestAuth | undefined): void {
    this.principal = peer === undefined ? '' : principalOf(peer);
    this.namespace = peer?.namespace ?? '';
    this.port = port;
    this.req = req;
    this.auth = auth;
    this.http = req !== undefined;
    this.#path = undefined;
    this.#host = undefined;
    this.#authority = undefined;
  }

  get path(): string {
    return (this.#path ??= normalizePath(this.req?.path ?? ''));
  }
  get host(): string {
    return (this.#host ??= hostOf(this.req?.host ?? ''));
  }
  get authority(): string {
    return (this.#authority ??= (this.req?.host ?? '').toLowerCase());
  }
  get method(): string {
    return this.req?.method ?? '';
  }

  /** The request's header `name` (lower case); several are joined with `,`, as Envoy does. '' when absent. */
  header(name: string): string {
    const lines = this.req?.lines;
    if (lines === undefined) return '';
    let out: string | undefined;
    for (const line of lines) {
      if (line.length <= name.length || line.charCodeAt(name.length) !== 58 /* : */) continue;
      if (line.slice(0, name.length).toLowerCase() !== name) continue;
      const v = line.slice(name.length + 1).trim();
      out = out === undefined ? v : `${out},${v}`;
    }
    return out ?? '';
  }
}

const principals = new WeakMap<WorkloadName, string>();

/** `cluster.local/ns/default/sa/backend`: the form policies name a peer in (cached per peer object). */
export function principalOf(peer: WorkloadName): string {
  let p = principals.get(peer);
  if (p === undefined) principals.set(peer, (p = `${peer.trustDomain}/ns/${peer.namespace}/sa/${peer.serviceAccount}`));
  return p;
}

/** A list matched positively and one negatively: absent halves match. */
interface Pair {
  readonly yes: ListMatcher | undefined;
  readonly no: ListMatcher | undefined;
}

function pair(yes: unknown, no: unknown, lower = false): Pair {
  return { yes: list(yes, lower), no: list(no, lower) };
}

function list(v: unknown, lower = false): ListMatcher | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new Error('a match list is not a list');
  return new ListMatcher(v, lower);
}

function pairMatches(p: Pair, v: string): boolean {
  return (p.yes === undefined || p.yes.matches(v)) && (p.no === undefined || !p.no.matches(v));
}

interface Source {
  readonly principals: Pair;
  readonly namespaces: Pair;
  readonly requestPrincipals: Pair;
  readonly httpOnly: boolean;
}

interface Operation {
  readonly hosts: Pair;
  readonly hostsWithPort: Pair;
  readonly ports: ReadonlySet<number> | undefined;
  readonly notPorts: ReadonlySet<number> | undefined;
  readonly methods: Pair;
  readonly paths: Pair;
  readonly httpOnly: boolean;
}

interface Condition {
  readonly key: ConditionKey;
  readonly values: ListMatcher | undefined;
  readonly notValues: ListMatcher | undefined;
  readonly httpOnly: boolean;
}

interface Rule {
  readonly from: readonly Source[] | undefined;
  readonly to: readonly Operation[] | undefined;
  readonly when: readonly Condition[];
  /** Names an HTTP-only field: never matches a TCP connection in an ALLOW or AUDIT policy. */
  readonly httpOnly: boolean;
}

interface Policy {
  readonly name: string;
  readonly action: Action;
  readonly dryRun: boolean;
  readonly rules: readonly Rule[];
  readonly denied: Verdict;
  readonly dryRunDenied: Verdict;
  readonly audited: Verdict;
  /** An ALLOW policy's note when it is the one that let a request in (traces read it). */
  readonly allowed: Verdict;
}

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function asList(v: unknown, what: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`${what} is not a list`);
  return v;
}

/** Splits a list of values or patterns by whether they name a port (`host:8080`): matched against the authority whole. */
function hostPairs(o: Record<string, unknown>): { hosts: Pair; hostsWithPort: Pair } {
  const split = (v: unknown): [unknown[] | undefined, unknown[] | undefined] => {
    if (v === undefined) return [undefined, undefined];
    const all = asList(v, 'hosts');
    const withPort = all.filter((h) => typeof h === 'string' && /:[0-9*]+$/.test(h));
    const plain = all.filter((h) => !withPort.includes(h));
    return [plain.length > 0 ? plain : undefined, withPort.length > 0 ? withPort : undefined];
  };
  const [yes, yesPort] = split(o.hosts);
  const [no, noPort] = split(o.notHosts);
  // A host list with and without ports matches when either half does.
  return {
    hosts: { yes: list(yes, true), no: list(no, true) },
    hostsWithPort: { yes: list(yesPort, true), no: list(noPort, true) },
  };
}

function compileRule(raw: unknown): Rule {
  const r = asObject(raw, 'a rule');
  const from =
    r.from === undefined
      ? undefined
      : asList(r.from, 'from').map((f): Source => {
          const s = asObject(f, 'a source');
          return {
            principals: pair(s.principals, s.notPrincipals),
            namespaces: pair(s.namespaces, s.notNamespaces),
            requestPrincipals: pair(s.requestPrincipals, s.notRequestPrincipals),
            httpOnly: s.requestPrincipals !== undefined || s.notRequestPrincipals !== undefined,
          };
        });
  const to =
    r.to === undefined
      ? undefined
      : asList(r.to, 'to').map((t): Operation => {
          const o = asObject(t, 'an operation');
          return {
            ...hostPairs(o),
            ports: o.ports === undefined ? undefined : portSet(asList(o.ports, 'ports')),
            notPorts: o.notPorts === undefined ? undefined : portSet(asList(o.notPorts, 'notPorts')),
            methods: pair(o.methods, o.notMethods),
            paths: pair(o.paths, o.notPaths),
            httpOnly:
              o.hosts !== undefined ||
              o.notHosts !== undefined ||
              o.methods !== undefined ||
              o.notMethods !== undefined ||
              o.paths !== undefined ||
              o.notPaths !== undefined,
          };
        });
  const when = asList(r.when, 'when').map((c): Condition => {
    const cond = asObject(c, 'a condition');
    const key = typeof cond.key === 'string' ? parseConditionKey(cond.key) : 'no key';
    if (typeof key === 'string') throw new Error(`condition: ${key}`);
    if (cond.values === undefined && cond.notValues === undefined) throw new Error('a condition without values or notValues');
    if (key.kind === 'destination.port') {
      // Checked as ports, so `values: ["8080"]` is exactly port 8080.
      portSet(asList(cond.values, 'values'));
      portSet(asList(cond.notValues, 'notValues'));
    }
    return { key, values: list(cond.values), notValues: list(cond.notValues), httpOnly: isHttpOnlyKey(key) };
  });
  const httpOnly = (from?.some((s) => s.httpOnly) ?? false) || (to?.some((o) => o.httpOnly) ?? false) || when.some((c) => c.httpOnly);
  return { from, to, when, httpOnly };
}

function compilePolicy(raw: unknown): Policy {
  const p = asObject(raw, 'a policy');
  if (typeof p.name !== 'string' || p.name === '' || p.name.length > 512) throw new Error('a policy without a name');
  const name = p.name;
  const action = p.action;
  if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') throw new Error(`policy ${name}: unknown action ${String(action)}`);
  let rules: Rule[];
  try {
    rules = asList(p.rules, 'rules').map(compileRule);
  } catch (err) {
    throw new Error(`policy ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return {
    name,
    action,
    dryRun: p.dryRun === true,
    rules,
    denied: { policy: name, action, result: 'denied' },
    dryRunDenied: { policy: name, action, result: 'dry-run-denied' },
    audited: { policy: name, action, result: 'audited' },
    allowed: { policy: name, action, result: 'allowed' },
  };
}

/** The string value of a claim (a list: each of its strings); undefined when it has none. */
function claimValues(auth: RequestAuth | undefined, path: readonly string[]): unknown {
  let v: unknown = auth?.claims;
  for (const p of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, p)) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

/** Whether a claim (a string, number, boolean, or a list of them) has a value `m` matches. */
function claimMatches(m: ListMatcher, v: unknown): boolean {
  if (Array.isArray(v)) {
    for (const x of v) if (scalar(x) !== '' && m.matches(scalar(x))) return true;
    return false;
  }
  return m.matches(scalar(v));
}

function scalar(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
}

/** The set of policies one decision is made with (the enforced ones, or those plus the dry-run ones). */
class PolicySet {
  readonly deny: readonly Policy[];
  readonly allow: readonly Policy[];
  /** Refused because no ALLOW policy allowed it: named after every ALLOW policy of the set. */
  readonly defaultDenied: Verdict | undefined;

  constructor(policies: readonly Policy[], result: 'denied' | 'dry-run-denied') {
    this.deny = policies.filter((p) => p.action === 'DENY');
    this.allow = policies.filter((p) => p.action === 'ALLOW');
    this.defaultDenied =
      this.allow.length === 0
        ? undefined
        : {
            policy: this.allow
              .map((p) => p.name)
              .sort()
              .join(','),
            action: 'ALLOW',
            result,
          };
  }
}

/** Allowed with no ALLOW policy to name: none applies, and no DENY matched. */
const NO_ALLOW_POLICY: Verdict = { policy: '', action: 'ALLOW', result: 'allowed' };

/** What `explain` says of a request: the enforced decision and who made it, a dry run's and the audits'. */
export interface AuthzExplanation {
  readonly decision: 'allow' | 'deny';
  /** deny: the DENY policy that matched, or the ALLOW policies none of which did; allow: the ALLOW policy that matched (absent: none applies). */
  readonly policy?: string;
  readonly action?: 'ALLOW' | 'DENY';
  /** A dryRun policy that would refuse what is let through (logged and counted, not enforced). */
  readonly dryRun?: { readonly policy: string; readonly action: 'ALLOW' | 'DENY' };
  /** The AUDIT policies that match. */
  readonly audited: readonly string[];
}

/** The policies of one snapshot, asked per request or connection. */
export class AuthzEngine {
  /** No policy applies: every caller is allowed, and the layer does nothing. */
  readonly empty: boolean;
  readonly #enforced: PolicySet;
  /** With the dry-run policies too; undefined when there are none. */
  readonly #withDryRun: PolicySet | undefined;
  /** The AUDIT policies: a match is logged and counted, nothing more. */
  readonly #audit: readonly Policy[];
  readonly #a = new Attributes();
  #allowedBy: Verdict = NO_ALLOW_POLICY;

  /** Throws (the snapshot is refused) on anything it can't compile. */
  constructor(snapshot: AuthorizationSnapshot | undefined) {
    const raw = snapshot === undefined ? [] : asList(asObject(snapshot, 'authorization').policies, 'policies');
    const policies = raw.map(compilePolicy);
    this.empty = policies.length === 0;
    this.#enforced = new PolicySet(
      policies.filter((p) => !p.dryRun),
      'denied',
    );
    this.#withDryRun = policies.some((p) => p.dryRun && p.action !== 'AUDIT') ? new PolicySet(policies, 'dry-run-denied') : undefined;
    this.#audit = policies.filter((p) => p.action === 'AUDIT');
  }

  /** L7: what to do with an HTTP request on `port`; undefined: allowed with nothing to log. */
  checkHttp(ex: Exchange, port: number): Verdict | undefined {
    this.#a.reset(ex.peer, port, ex.req, ex.requestAuth);
    return this.#decide();
  }

  /**
   * Why the last check that returned undefined let its request in: the ALLOW policy that
   * matched, or policy '' when the service has no ALLOW policy and no DENY matched. Made
   * once per snapshot, so the layer keeps it on the exchange (for its trace span) for free.
   */
  get allowed(): Verdict {
    return this.#allowedBy;
  }

  /**
   * Everything the engine would say of a request (`trellis explain`, never on the request
   * path): the enforced decision and the policy that made it, what a dry-run policy would
   * do, and every AUDIT policy that matches. `peer` undefined: a caller with no certificate.
   */
  explain(peer: WorkloadName | undefined, port: number, req: AuthzRequest, auth: RequestAuth | undefined): AuthzExplanation {
    const a = this.#a;
    a.reset(peer, port, req, auth);
    const audited = this.#audit.filter((p) => policyMatches(p, a)).map((p) => p.name);
    const refused = this.#refusal(this.#enforced, a);
    if (refused !== undefined) return { decision: 'deny', policy: refused.policy, action: refused.action as 'ALLOW' | 'DENY', audited };
    const allowedBy = this.#allowedBy;
    const would = this.#withDryRun === undefined ? undefined : this.#refusal(this.#withDryRun, a);
    return {
      decision: 'allow',
      ...(allowedBy.policy !== '' ? { policy: allowedBy.policy, action: 'ALLOW' as const } : {}),
      ...(would !== undefined ? { dryRun: { policy: would.policy, action: would.action as 'ALLOW' | 'DENY' } } : {}),
      audited,
    };
  }

  /**
   * L4: what to do with a TCP connection from `peer` (undefined: not known, as every
   * peer is until mTLS) on `port`, before the app connection is opened.
   */
  checkTcp(peer: WorkloadName | undefined, port: number): Verdict | undefined {
    this.#a.reset(peer, port, undefined, undefined);
    return this.#decide();
  }

  #decide(): Verdict | undefined {
    if (this.empty) return undefined;
    const a = this.#a;
    const refused = this.#refusal(this.#enforced, a);
    if (refused !== undefined) return refused;
    if (this.#withDryRun !== undefined) {
      // The enforced set let it through, so a refusal here is a dry-run policy's doing.
      const would = this.#refusal(this.#withDryRun, a);
      if (would !== undefined) return would;
    }
    for (const p of this.#audit) if (policyMatches(p, a)) return p.audited;
    return undefined;
  }

  /** The verdict of one set: a DENY that matches, or the default refusal when ALLOW policies exist and none matches. */
  #refusal(set: PolicySet, a: Attributes): Verdict | undefined {
    const enforced = set === this.#enforced;
    for (const p of set.deny) if (policyMatches(p, a)) return enforced ? p.denied : p.dryRunDenied;
    if (set.allow.length === 0) {
      if (enforced) this.#allowedBy = NO_ALLOW_POLICY;
      return undefined;
    }
    for (const p of set.allow) {
      if (policyMatches(p, a)) {
        if (enforced) this.#allowedBy = p.allowed;
        return undefined;
      }
    }
    return set.defaultDenied;
  }
}

function policyMatches(p: Policy, a: Attributes): boolean {
  for (const r of p.rules) if (ruleMatches(r, a, p.action === 'DENY')) return true;
  return false;
}

/** `deny`: at L4, HTTP-only fields count as matching (Istio); else a rule naming one never matches a connection. */
function ruleMatches(r: Rule, a: Attributes, deny: boolean): boolean {
  if (!a.http && r.httpOnly && !deny) return false;
  if (r.from !== undefined && !r.from.some((s) => sourceMatches(s, a))) return false;
  if (r.to !== undefined && !r.to.some((o) => operationMatches(o, a))) return false;
  for (const c of r.when) if (!conditionMatches(c, a)) return false;
  return true;
}

function sourceMatches(s: Source, a: Attributes): boolean {
  if (!pairMatches(s.principals, a.principal) || !pairMatches(s.namespaces, a.namespace)) return false;
  // Only reached at L4 by a DENY rule, where the HTTP-only part counts as matching.
  if (!a.http) return true;
  return pairMatches(s.requestPrincipals, a.auth?.principal ?? '');
}

function operationMatches(o: Operation, a: Attributes): boolean {
  if (o.ports !== undefined && !o.ports.has(a.port)) return false;
  if (o.notPorts?.has(a.port) === true) return false;
  if (!a.http) return true;
  if (o.hosts.yes !== undefined || o.hostsWithPort.yes !== undefined) {
    if (!(o.hosts.yes?.matches(a.host) === true || o.hostsWithPort.yes?.matches(a.authority) === true)) return false;
  }
  if (o.hosts.no?.matches(a.host) === true || o.hostsWithPort.no?.matches(a.authority) === true) return false;
  return pairMatches(o.methods, a.method) && pairMatches(o.paths, a.path);
}

function conditionMatches(c: Condition, a: Attributes): boolean {
  if (!a.http && c.httpOnly) return true;
  const k = c.key;
  if (k.kind === 'claim' || k.kind === 'request.auth.audiences' || k.kind === 'request.auth.presenter') {
    const v = claimValues(a.auth, k.kind === 'claim' ? k.path : k.kind === 'request.auth.audiences' ? ['aud'] : ['azp']);
    return (c.values === undefined || claimMatches(c.values, v)) && (c.notValues === undefined || !claimMatches(c.notValues, v));
  }
  let v: string;
  switch (k.kind) {
    case 'header':
      v = a.header(k.name);
      break;
    case 'source.principal':
      v = a.principal;
      break;
    case 'source.namespace':
      v = a.namespace;
      break;
    case 'destination.port':
      v = a.port === 0 ? '' : String(a.port);
      break;
    case 'request.auth.principal':
      v = a.auth?.principal ?? '';
      break;
  }
  return (c.values === undefined || c.values.matches(v)) && (c.notValues === undefined || !c.notValues.matches(v));
}

/** The engine of a snapshot with no policies: allows everything at no cost. */
export const NO_AUTHORIZATION = new AuthzEngine(undefined);
