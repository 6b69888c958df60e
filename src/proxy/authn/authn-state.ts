// A proxy's end-user authentication across snapshots: the JwtAuthenticator of the
// snapshot in force (what the layer reads, swapped in one assignment), and the jwksUri
// sources, kept from one snapshot to the next while a rule names the same URL with the
// same settings, so a new snapshot neither refetches keys nor drops the ones it has.
import type { JwtRuleSnapshot, RequestAuthenticationSnapshot } from '../../api/protocol.js';
import { parseJwks } from '../../security/jwks.js';
import type { AuthnMetrics } from './authn-metrics.js';
import { keySetOf, RemoteJwks, StaticJwks, type AuthnClock, type JwksSource } from './jwks-source.js';
import { DEFAULT_CACHE_LIMITS, JwtAuthenticator, type CompiledJwtRule, type VerdictCacheLimits } from './jwt-authenticator.js';

export interface AuthnStateOptions {
  readonly clock: AuthnClock;
  readonly metrics: AuthnMetrics;
  readonly log: (line: string) => void;
  /** Least time between two fetches an unknown kid starts (tests shorten it). */
  readonly kidCooldownMs?: number;
  readonly cacheLimits?: VerdictCacheLimits;
}

export class AuthnState {
  readonly #o: AuthnStateOptions;
  #current: JwtAuthenticator | undefined;
  /** The inline key sets of the snapshot in force, by text: a snapshot that keeps one keeps its imported keys. */
  #static = new Map<string, StaticJwks>();
  #remote: RemoteJwks[] = [];

  constructor(o: AuthnStateOptions) {
    this.#o = o;
  }

  /** The rules in force; undefined when none apply. */
  get current(): JwtAuthenticator | undefined {
    return this.#current;
  }

  /**
   * Checks `snap` and makes it the one in force; throws (the snapshot is NACKed, the
   * rules in force stay) when a rule can't be used.
   */
  apply(snap: RequestAuthenticationSnapshot | undefined): void {
    const rules = Array.isArray(snap?.rules) ? snap.rules : [];
    const statics = new Map<string, StaticJwks>();
    const remotes: RemoteJwks[] = [];
    const fresh: RemoteJwks[] = [];
    let authenticator: JwtAuthenticator | undefined;
    const compiled: CompiledJwtRule[] = [];
    for (const [i, r] of rules.entries()) {
      checkRule(r, i);
      let keys: JwksSource;
      if (typeof r.jwks === 'string') {
        let s = statics.get(r.jwks) ?? this.#static.get(r.jwks);
        if (s === undefined) {
          const parsed = parseJwks(r.jwks);
          if (typeof parsed === 'string') throw new Error(`requestAuthentication rule ${i} (${r.policy}): its key set ${parsed}`);
          s = new StaticJwks(keySetOf(parsed));
        }
        statics.set(r.jwks, s);
        keys = s;
      } else {
        const uri = r.jwksUri as string;
        const refreshMs = r.jwksRefreshMs ?? 300_000;
        const maxStaleMs = r.jwksMaxStaleMs ?? 86_400_000;
        let s = remotes.find((x) => x.sameAs(uri, refreshMs, maxStaleMs)) ?? this.#remote.find((x) => x.sameAs(uri, refreshMs, maxStaleMs));
        if (s === undefined) {
          s = new RemoteJwks({
            uri,
            refreshMs,
            maxStaleMs,
            clock: this.#o.clock,
            ...(this.#o.kidCooldownMs !== undefined ? { cooldownMs: this.#o.kidCooldownMs } : {}),
            // Verdicts made with keys that changed are void: a rotated-out key must stop working.
            changed: () => this.#current?.clearCache(),
            fetched: (result) => this.#o.metrics.fetched(result),
            log: this.#o.log,
          });
          fresh.push(s);
        }
        if (!remotes.includes(s)) remotes.push(s);
        keys = s;
      }
      compiled.push({ spec: r, keys, outputs: (r.outputClaimToHeaders ?? []).map((o) => ({ header: o.header.toLowerCase(), claim: o.claim })) });
    }
    if (compiled.length > 0) authenticator = new JwtAuthenticator(compiled, this.#o.clock, this.#o.cacheLimits ?? DEFAULT_CACHE_LIMITS);
    for (const old of this.#remote) if (!remotes.includes(old)) old.close();
    this.#static = statics;
    this.#remote = remotes;
    this.#current = authenticator;
    for (const s of fresh) s.start();
  }

  close(): void {
    for (const s of this.#remote) s.close();
    this.#remote = [];
    this.#current = undefined;
  }
}

/** A rule from the wire has the fields the verifier needs, of the right types; throws why not. */
function checkRule(r: JwtRuleSnapshot, i: number): void {
  const bad = (why: string): never => {
    throw new Error(`requestAuthentication rule ${i}: ${why}`);
  };
  if (typeof r !== 'object' || r === null) bad('not an object');
  if (typeof r.issuer !== 'string' || r.issuer === '') bad('no issuer');
  if ((typeof r.jwks === 'string') === (typeof r.jwksUri === 'string')) bad('needs exactly one of jwks and jwksUri');
  if (typeof r.jwksUri === 'string' && !/^https?:\/\//.test(r.jwksUri)) bad('jwksUri is not an http(s) URL');
  if (!Array.isArray(r.algorithms) || r.algorithms.length === 0 || r.algorithms.some((a) => typeof a !== 'string' || a === 'none' || a.startsWith('HS')))
    bad('algorithms must list asymmetric algorithms');
  if (!Array.isArray(r.from) || r.from.length === 0) bad('no token location');
  if (typeof r.clockSkewMs !== 'number' || !(r.clockSkewMs >= 0)) bad('clockSkewMs is not a duration');
  if (typeof r.maxTokenBytes !== 'number' || !(r.maxTokenBytes > 0)) bad('maxTokenBytes is not a size');
  if (typeof r.forwardOriginalToken !== 'boolean') bad('forwardOriginalToken is not a boolean');
}
