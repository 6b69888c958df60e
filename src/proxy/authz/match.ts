// The matchers an AuthorizationPolicy compiles to, built once per snapshot: lists of
// Istio string matches (exact values in a Set, prefixes and suffixes as string
// comparisons; no regular expression anywhere), and the request values they are
// matched against, normalized once per request (the path as Istio's BASE normalization
// reads it, the host without its port).
import { parseStringMatch, type StringMatch } from '../../api/authorization.js';

/** One policy list (`principals`, `paths`, ...): matches when one of its values does. */
export class ListMatcher {
  readonly #exact = new Set<string>();
  readonly #prefixes: string[] = [];
  readonly #suffixes: string[] = [];
  #presence = false;

  /** `values` as policies write them; `lower`: compare in lower case (hosts). Throws on a value no match can be made of. */
  constructor(values: readonly unknown[], lower = false) {
    for (const raw of values) {
      if (typeof raw !== 'string' || raw === '') throw new Error(`${JSON.stringify(raw)} is not a match value`);
      const m: StringMatch | undefined = parseStringMatch(lower ? raw.toLowerCase() : raw);
      if (m === undefined) throw new Error(`"${raw}" has a * in the middle`);
      if (m.kind === 'presence') this.#presence = true;
      else if (m.kind === 'exact') this.#exact.add(m.value);
      else if (m.kind === 'prefix') this.#prefixes.push(m.value);
      else this.#suffixes.push(m.value);
    }
  }

  /** Whether `v` matches one value; '' (absent) never does. */
  matches(v: string): boolean {
    if (v === '') return false;
    if (this.#presence || this.#exact.has(v)) return true;
    for (const p of this.#prefixes) if (v.startsWith(p)) return true;
    for (const s of this.#suffixes) if (v.endsWith(s)) return true;
    return false;
  }
}

/** A list of ports (numbers 1-65535); throws on anything else. */
export function portSet(values: readonly unknown[]): ReadonlySet<number> {
  const out = new Set<number>();
  for (const v of values) {
    const n = typeof v === 'string' && /^[0-9]{1,5}$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${JSON.stringify(v)} is not a port`);
    out.add(n);
  }
  return out;
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * The path as policies match it (Istio's default BASE normalization, RFC 3986 6.2.2):
 * percent-encoded unreserved characters decoded (`/%61dmin` is `/admin`), `.` and `..`
 * segments removed (`/public/../admin` is `/admin`), so no spelling of a path slips past
 * a DENY rule or into an ALLOW one. `%2F` stays encoded, as in Istio.
 */
export function normalizePath(path: string): string {
  if (!path.includes('%') && !path.includes('/.')) return path;
  let p = path;
  if (p.includes('%')) {
    p = p.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
      const c = String.fromCharCode(Number.parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : m.toUpperCase();
    });
  }
  if (!p.includes('/.')) return p;
  const out: string[] = [];
  const segments = p.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return `/${out.join('/')}`;
}

/** The host of a Host header or authority, lower case, without port or trailing dot. */
export function hostOf(authority: string): string {
  let h = authority;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end === -1 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.lastIndexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}
