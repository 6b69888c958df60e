// JSON Web Key Sets (RFC 7517 §5) as the mesh reads them: from a RequestAuthentication's
// inline `jwks` or `jwksFile` (checked by the config loader), and from a `jwksUri` a
// proxy fetches (checked again there, since a URL serves whatever it likes). One parser
// for both, so a key set the control plane accepts is one the proxy accepts.
//
// A set must hold public keys only: a JWK with private members (`d`, RSA's primes) is
// refused, since it would travel in snapshots and sit in every proxy's memory, and so is
// a symmetric (`oct`) key, a shared secret (the mesh verifies asymmetric signatures only).

/** One key of a set, as JSON: `kty` and the members its type needs (checked by jose on import). */
export interface Jwk {
  readonly kty: string;
  readonly kid?: string;
  readonly alg?: string;
  readonly use?: string;
  readonly [member: string]: unknown;
}

export interface Jwks {
  readonly keys: readonly Jwk[];
}

/** Key types a set may hold (RFC 7518 §6, RFC 8037): public ones. */
const KEY_TYPES: ReadonlySet<string> = new Set(['RSA', 'EC', 'OKP']);
/** Members of a private JWK (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'] as const;
/** At most this many keys in one set: an issuer rotates a handful, not thousands. */
export const MAX_JWKS_KEYS = 64;

/**
 * Parses a key set; a string says what is wrong with it (for a config problem or a log
 * line; it never quotes key material).
 */
export function parseJwks(text: string): Jwks | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'is not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON Web Key Set (an object with "keys")';
  const keys = (value as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) return 'has no "keys" array';
  if (keys.length === 0) return 'has no keys';
  if (keys.length > MAX_JWKS_KEYS) return `has ${keys.length} keys, more than ${MAX_JWKS_KEYS}`;
  const kids = new Set<string>();
  for (const [i, key] of keys.entries()) {
    if (typeof key !== 'object' || key === null || Array.isArray(key)) return `keys[${i}] is not an object`;
    const k = key as Record<string, unknown>;
    if (k.kty === 'oct') return `keys[${i}] is a symmetric (oct) key, a shared secret; the mesh verifies asymmetric signatures only (RS, PS, ES, EdDSA)`;
    if (typeof k.kty !== 'string' || !KEY_TYPES.has(k.kty)) return `keys[${i}] has no kty of RSA, EC or OKP`;
    if (k.kid !== undefined && (typeof k.kid !== 'string' || k.kid.length > 256)) return `keys[${i}].kid is not a string of at most 256 characters`;
    if (typeof k.kid === 'string') {
      if (kids.has(k.kid)) return `keys[${i}] repeats kid "${printable(k.kid)}"`;
      kids.add(k.kid);
    }
    for (const m of PRIVATE_MEMBERS) {
      if (m in k) return `keys[${i}] is a private key (it has "${m}"); a key set holds public keys only`;
    }
  }
  return { keys: keys as Jwk[] };
}

/** A kid for a message: printable ASCII, at most 64 characters. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}
