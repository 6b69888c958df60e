// What the config checks, the compiler and the proxy's authorization engine all read of
// an AuthorizationPolicy's values: Istio's string matches (exact, `abc*`, `*abc`, `*`),
// the principal form (`<trust domain>/ns/<namespace>/sa/<name>`, `spiffe://` optional),
// and the `when` keys the engine knows. One definition, so a value `trellis validate`
// accepts is one the proxy can compile, and the other way round.

/** How a policy's string value matches, as Istio's: exact, prefix (`abc*`), suffix (`*abc`), presence (`*`: any non-empty value). */
export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

/** A policy value as a match; undefined when it has a `*` anywhere but at one end (Istio refuses those too). */
export function parseStringMatch(v: string): StringMatch | undefined {
  if (v === '*') return { kind: 'presence' };
  const star = v.indexOf('*');
  if (star === -1) return { kind: 'exact', value: v };
  if (star !== v.lastIndexOf('*')) return undefined;
  if (star === v.length - 1) return { kind: 'prefix', value: v.slice(0, -1) };
  if (star === 0) return { kind: 'suffix', value: v.slice(1) };
  return undefined;
}

/** The principal form policies use: a SPIFFE ID without `spiffe://` (Istio's `cluster.local/ns/default/sa/backend`). */
export function normalizePrincipal(v: string): string {
  return v.startsWith('spiffe://') ? v.slice('spiffe://'.length) : v;
}

const PRINCIPAL = /^[a-z0-9._-]+\/ns\/[a-z0-9]([-a-z0-9]*[a-z0-9])?\/sa\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Whether an exact principal (no wildcard, `spiffe://` removed) has the workload form. */
export function isPrincipal(v: string): boolean {
  return PRINCIPAL.test(v);
}

/** A `when` key the engine evaluates. */
export type ConditionKey =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'source.principal' }
  | { readonly kind: 'source.namespace' }
  | { readonly kind: 'destination.port' }
  | { readonly kind: 'request.auth.principal' }
  | { readonly kind: 'request.auth.audiences' }
  | { readonly kind: 'request.auth.presenter' }
  | { readonly kind: 'claim'; readonly path: readonly string[] };

/** The `when` keys without a bracket, for error messages. */
export const SIMPLE_CONDITION_KEYS = [
  'source.principal',
  'source.namespace',
  'destination.port',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
] as const;

/** Keys Istio has that the proxy does not evaluate (it would be a silent never-match). */
export const UNSUPPORTED_CONDITION_KEYS: ReadonlySet<string> = new Set(['source.ip', 'remote.ip', 'destination.ip', 'connection.sni']);

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * A `when` key, parsed; a string says why it is not one. Header names are lower-cased
 * (HTTP names are case-insensitive); claims may nest (`request.auth.claims[a][b]`).
 */
export function parseConditionKey(key: string): ConditionKey | string {
  for (const k of SIMPLE_CONDITION_KEYS) if (key === k) return { kind: k };
  if (key.startsWith('request.headers[') && key.endsWith(']')) {
    const name = key.slice('request.headers['.length, -1);
    if (!HEADER_NAME.test(name)) return `"${name}" is not a header name`;
    return { kind: 'header', name: name.toLowerCase() };
  }
  if (key.startsWith('request.auth.claims[') && key.endsWith(']')) {
    const inner = key.slice('request.auth.claims['.length, -1);
    const path = inner.split('][');
    if (path.some((p) => p === '' || p.includes('[') || p.includes(']'))) return `"${inner}" is not a claim name (nested claims: request.auth.claims[a][b])`;
    return { kind: 'claim', path };
  }
  if (UNSUPPORTED_CONDITION_KEYS.has(key)) return `"${key}" is an Istio key Trellis does not evaluate`;
  return `unknown key "${key}"`;
}

/** Whether a key needs an HTTP request (Istio's HTTP-only attributes): a TCP connection never has it. */
export function isHttpOnlyKey(k: ConditionKey): boolean {
  return k.kind !== 'source.principal' && k.kind !== 'source.namespace' && k.kind !== 'destination.port';
}
