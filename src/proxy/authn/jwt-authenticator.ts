// The JWT rules of one snapshot, ready to check tokens: where tokens are read, which rule
// a token belongs to (its `iss`), and the verdict. Cheap refusals come first and need no
// crypto: size (before any parsing), shape, `alg` against the allow-list (`none` is never
// on it), issuer, `kid`. Then jose checks the signature with the rule's keys (each key
// imported once) and exp/nbf with the rule's clock skew, iss and aud.
//
// Verdicts on good tokens are kept briefly in a bounded LRU keyed by the token, so a
// client sending the same token on every request costs one signature check per token,
// not per request; a kept verdict still ends at the token's exp (plus skew), and all of
// them go when a rule's keys change (a rotation, or keys gone stale).
import type * as Jose from 'jose';
import type { JWTPayload, JWTVerifyGetKey, ProtectedHeaderParameters } from 'jose';
import type { JwtLocation, JwtRuleSnapshot } from '../../api/protocol.js';
import type { RequestHead } from '../../http1/http1-parser.js';
import type { RequestAuth } from '../stack/exchange.js';
import { joseNow, loadJose } from './jose.js';
import type { AuthnClock, JwksSource } from './jwks-source.js';

/** Why a token was refused: the `reason` label and the `{reason}` of the 401; a fixed set. */
export type JwtRefusal =
  | 'malformed'
  | 'too-large'
  | 'alg-not-allowed'
  | 'unknown-issuer'
  | 'unknown-kid'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-audience'
  | 'bad-claims'
  | 'jwks-unavailable';

/** The error_description of each refusal (RFC 6750: printable ASCII without `"` and `\`). Fixed texts: nothing of the token. */
export const REFUSAL_TEXT: Readonly<Record<JwtRefusal, string>> = {
  malformed: 'the token is not a well-formed signed JWT, or the request carries more than one',
  'too-large': 'the token is longer than the rule allows',
  'alg-not-allowed': 'the token is signed with an algorithm the rule does not accept',
  'unknown-issuer': 'no rule of this service accepts the token issuer',
  'unknown-kid': 'no key of the issuer matches the token kid',
  'bad-signature': 'the token signature does not verify',
  expired: 'the token has expired',
  'not-yet-valid': 'the token is not valid yet',
  'wrong-audience': 'the token audience is not one the rule accepts',
  'bad-claims': 'the token claims are not valid',
  'jwks-unavailable': 'the keys of the token issuer are not available',
};

/** One rule, with its keys. */
export interface CompiledJwtRule {
  readonly spec: JwtRuleSnapshot;
  readonly keys: JwksSource;
  /** `outputClaimToHeaders`, as lower-case names. */
  readonly outputs: readonly { readonly header: string; readonly claim: string }[];
}

/** A good token's verdict: the end user, the rule that verified it, and the header lines its claims become. */
export interface Accepted {
  readonly kind: 'accepted';
  readonly auth: RequestAuth;
  readonly rule: CompiledJwtRule;
  /** `name: value` lines of outputClaimToHeaders. */
  readonly claimLines: readonly string[];
  /** The clock time (ms) after which the verdict no longer holds: exp + skew (Infinity without exp). */
  readonly until: number;
}

export interface Refused {
  readonly kind: 'refused';
  readonly reason: JwtRefusal;
}

export type Verdict = Accepted | Refused;

/** A token found in a request, and where (a header line's name, or a query parameter). */
export interface FoundToken {
  readonly kind: 'found';
  readonly token: string;
  readonly at: JwtLocation;
}

const REFUSALS = new Map<JwtRefusal, Refused>(Object.keys(REFUSAL_TEXT).map((r) => [r as JwtRefusal, { kind: 'refused', reason: r as JwtRefusal }]));
export function refused(reason: JwtRefusal): Refused {
  return REFUSALS.get(reason)!;
}

/** Kept verdicts: at most this many tokens, and this many bytes of them. */
export interface VerdictCacheLimits {
  readonly entries: number;
  readonly bytes: number;
  /** A kept verdict is checked again (the signature too) after this long at most. */
  readonly ttlMs: number;
}
export const DEFAULT_CACHE_LIMITS: VerdictCacheLimits = { entries: 1024, bytes: 2 * 1024 * 1024, ttlMs: 300_000 };

/** A token's characters: three base64url parts joined by dots (RFC 7515 compact serialization). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export class JwtAuthenticator {
  readonly rules: readonly CompiledJwtRule[];
  /** Every place a rule reads tokens from, in rule order, without repeats. */
  readonly #locations: JwtLocation[] = [];
  /** Header names carrying tokens (lower case), to strip them when a rule does not forward them. */
  readonly #tokenHeaders: ReadonlySet<string>;
  /** Headers some rule writes from claims: what a client sent under them never reaches the app. */
  readonly claimHeaders: ReadonlySet<string>;
  /** The longest token any rule takes: longer ones are refused before parsing. */
  readonly #maxBytes: number;
  readonly #algorithms: ReadonlySet<string>;
  readonly #clock: AuthnClock;
  readonly #limits: VerdictCacheLimits;
  readonly #cache = new Map<string, { verdict: Accepted; at: number }>();
  #cacheBytes = 0;

  constructor(rules: readonly CompiledJwtRule[], clock: AuthnClock, limits: VerdictCacheLimits = DEFAULT_CACHE_LIMITS) {
    this.rules = rules;
    this.#clock = clock;
    this.#limits = limits;
    // jose is loaded on the first proxy with JWT rules (src/proxy/authn/jose.ts); a failed
    // load shows at check(), as jwks-unavailable.
    loadJose().catch(() => {});
    const seen = new Set<string>();
    for (const r of rules) {
      for (const at of r.spec.from) {
        const key = 'header' in at ? `h:${at.header}:${at.prefix}` : `q:${at.param}`;
        if (seen.has(key)) continue;
        seen.add(key);
        this.#locations.push('header' in at ? { header: at.header.toLowerCase(), prefix: at.prefix } : at);
      }
    }
    this.#tokenHeaders = new Set(this.#locations.flatMap((l) => ('header' in l ? [l.header] : [])));
    this.claimHeaders = new Set(rules.flatMap((r) => r.outputs.map((o) => o.header)));
    this.#maxBytes = Math.max(...rules.map((r) => r.spec.maxTokenBytes));
    this.#algorithms = new Set(rules.flatMap((r) => r.spec.algorithms));
  }

  /** Forgets every kept verdict (a rule's keys changed). */
  clearCache(): void {
    this.#cache.clear();
    this.#cacheBytes = 0;
  }

  /**
   * The request's token: undefined when it has none, a refusal when it has more than one
   * (which one the app would read is not ours to guess), or when one is too long.
   */
  find(req: RequestHead): FoundToken | Refused | undefined {
    let found: FoundToken | undefined;
    for (const at of this.#locations) {
      if ('header' in at) {
        for (const line of req.lines) {
          const colon = line.indexOf(':');
          if (colon !== at.header.length || line.slice(0, colon).toLowerCase() !== at.header) continue;
          const value = line.slice(colon + 1).trim();
          if (value.length < at.prefix.length || value.slice(0, at.prefix.length).toLowerCase() !== at.prefix.toLowerCase()) continue;
          const token = value.slice(at.prefix.length).trim();
          if (token === '') continue;
          if (found !== undefined && found.token !== token) return refused('malformed');
          found ??= { kind: 'found', token, at };
        }
      } else {
        const token = queryParam(req.target, at.param);
        if (token === undefined || token === '') continue;
        if (found !== undefined && found.token !== token) return refused('malformed');
        found ??= { kind: 'found', token, at };
      }
    }
    if (found !== undefined && found.token.length > this.#maxBytes) return refused('too-large');
    return found;
  }

  /** Whether header `name` (lower case) carries tokens for some rule. */
  carriesToken(name: string): boolean {
    return this.#tokenHeaders.has(name);
  }

  /**
   * The verdict on `token`: at once for a kept verdict or a cheap refusal, else a promise
   * (the signature check is WebCrypto's, asynchronous).
   */
  check(token: string): Verdict | Promise<Verdict> {
    const now = this.#clock.now();
    const kept = this.#cache.get(token);
    if (kept !== undefined) {
      if (now < kept.verdict.until && now - kept.at < this.#limits.ttlMs) {
        // Most recently used last: the oldest entry goes first when the cache is full.
        this.#cache.delete(token);
        this.#cache.set(token, kept);
        return kept.verdict;
      }
      this.#forget(token);
    }
    if (!COMPACT_JWS.test(token)) return refused('malformed');
    const jose = joseNow();
    // Only until jose is loaded (it started loading when this authenticator was made).
    if (jose === undefined) {
      return loadJose().then(
        () => this.check(token),
        () => refused('jwks-unavailable'),
      );
    }
    let header: ProtectedHeaderParameters;
    let payload: JWTPayload;
    try {
      header = jose.decodeProtectedHeader(token);
      payload = jose.decodeJwt(token);
    } catch {
      return refused('malformed');
    }
    if (typeof header.alg !== 'string' || !this.#algorithms.has(header.alg)) return refused('alg-not-allowed');
    if (typeof payload.iss !== 'string') return refused('unknown-issuer');
    const rule = this.rules.find((r) => r.spec.issuer === payload.iss);
    if (rule === undefined) return refused('unknown-issuer');
    if (token.length > rule.spec.maxTokenBytes) return refused('too-large');
    if (!rule.spec.algorithms.includes(header.alg)) return refused('alg-not-allowed');
    const keys = rule.keys.current();
    if (keys === undefined) return refused('jwks-unavailable');
    if (header.kid !== undefined && !keys.kids.has(header.kid)) {
      rule.keys.unknownKid();
      return refused('unknown-kid');
    }
    return this.#verify(jose, token, rule, keys.getKey, now);
  }

  async #verify(jose: typeof Jose, token: string, rule: CompiledJwtRule, getKey: JWTVerifyGetKey, now: number): Promise<Verdict> {
    const spec = rule.spec;
    let payload: JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, getKey, {
        issuer: spec.issuer,
        ...(spec.audiences !== undefined && spec.audiences.length > 0 ? { audience: spec.audiences } : {}),
        algorithms: spec.algorithms,
        clockTolerance: spec.clockSkewMs / 1000,
        currentDate: new Date(now),
      }));
    } catch (err) {
      return refused(refusalOf(jose.errors, err));
    }
    const verdict: Accepted = {
      kind: 'accepted',
      auth: { principal: `${spec.issuer}/${typeof payload.sub === 'string' ? payload.sub : ''}`, claims: Object.freeze(payload) },
      rule,
      claimLines: claimLines(rule.outputs, payload),
      until: typeof payload.exp === 'number' ? payload.exp * 1000 + spec.clockSkewMs : Number.POSITIVE_INFINITY,
    };
    this.#keep(token, verdict, now);
    return verdict;
  }

  #keep(token: string, verdict: Accepted, now: number): void {
    const limits = this.#limits;
    if (limits.entries <= 0 || token.length > limits.bytes) return;
    this.#forget(token);
    while (this.#cache.size >= limits.entries || this.#cacheBytes + token.length > limits.bytes) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#forget(oldest.value);
    }
    this.#cache.set(token, { verdict, at: now });
    this.#cacheBytes += token.length;
  }

  #forget(token: string): void {
    if (this.#cache.delete(token)) this.#cacheBytes -= token.length;
  }

  /** Kept verdicts now (tests, and the admin view). */
  get cached(): number {
    return this.#cache.size;
  }
}

/** jose's error → the refusal it stands for. */
function refusalOf(errors: typeof Jose.errors, err: unknown): JwtRefusal {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return 'not-yet-valid';
    if (err.claim === 'aud') return 'wrong-audience';
    if (err.claim === 'iss') return 'unknown-issuer';
    return 'bad-claims';
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad-signature';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'alg-not-allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown-kid';
  // A key of the wrong type for the alg, an unsupported curve: the token does not fit the keys.
  if (err instanceof errors.JOSENotSupported || err instanceof errors.JWKSInvalid) return 'bad-signature';
  return 'malformed';
}

/**
 * The header lines outputClaimToHeaders writes: a claim that is a string, number or
 * boolean (or an array of them, comma-joined), as Envoy's claim_to_headers does; a nested
 * claim as `a.b`. A value with anything but printable ASCII, or longer than 1 KiB, is
 * left out: a claim must not inject a header line.
 */
function claimLines(outputs: readonly { readonly header: string; readonly claim: string }[], payload: JWTPayload): string[] {
  const lines: string[] = [];
  for (const o of outputs) {
    let v: unknown = payload;
    for (const part of o.claim.split('.')) v = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>)[part] : undefined;
    const text = Array.isArray(v) ? (v.every(isScalar) ? v.map(String).join(',') : undefined) : isScalar(v) ? String(v) : undefined;
    if (text === undefined || text.length > 1024 || /[^\x20-\x7e]/.test(text)) continue;
    lines.push(`${o.header}: ${text}`);
  }
  return lines;
}

function isScalar(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** The value of query parameter `name` in `target` (percent-decoded); undefined when absent or undecodable. */
export function queryParam(target: string, name: string): string | undefined {
  const q = target.indexOf('?');
  if (q === -1) return undefined;
  for (const pair of target.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    if ((eq === -1 ? pair : pair.slice(0, eq)) !== name) continue;
    try {
      return eq === -1 ? '' : decodeURIComponent(pair.slice(eq + 1));
    } catch {
      return undefined;
    }
  }
  return undefined;
}
