// Where a JWT rule's keys come from, and keeping them current without ever making a
// request wait. A key set from the snapshot (inline or a jwksFile the control plane read)
// is imported once. A jwksUri is fetched by this proxy in the background: at start, every
// refresh interval, and soon after a token names a `kid` the keys lack (a rotation the
// interval has not caught yet), at most once per cooldown, so a flood of tokens with made-up
// kids costs one fetch per cooldown, not one per request (jose's remote set uses the
// same 30 s cooldown).
//
// Failure policy, while a jwksUri cannot be fetched (refused, timeout, not 200, not a
// valid public key set): the last keys fetched stay in use, and the fetch is retried
// with backoff (1 s doubling, capped at the refresh interval), for at most `maxStaleMs`
// after the last good fetch (default 24 h); past that, or when no fetch ever succeeded,
// the rule has no keys and its tokens are refused 401 `jwks-unavailable`. Requests
// without a token are not affected (authorization decides about them). One log line when
// fetching starts failing and one when it recovers, never one per attempt or request.
import http from 'node:http';
import type { JWTVerifyGetKey } from 'jose';
import { parseJwks, type Jwks } from '../../security/jwks.js';
import { loadJose } from './jose.js';
import { REAL_CLOCK, type RenewalClock } from '../tls/certificate-renewer.js';

/** The clock and timers of key refreshes (real ones by default; tests advance a fake one). */
export type AuthnClock = RenewalClock;
export const REAL_AUTHN_CLOCK: AuthnClock = REAL_CLOCK;

/** A key set ready to verify with: jose imports each key once, on first use, and keeps it (jose itself is loaded then too, src/proxy/authn/jose.ts). */
export interface KeySet {
  /** The `kid`s of its keys (a token's kid not among them is unknown). */
  readonly kids: ReadonlySet<string>;
  readonly getKey: JWTVerifyGetKey;
}

export function keySetOf(jwks: Jwks): KeySet {
  const kids = new Set<string>();
  for (const k of jwks.keys) if (typeof k.kid === 'string') kids.add(k.kid);
  let local: JWTVerifyGetKey | undefined;
  const getKey: JWTVerifyGetKey = async (header, token) => {
    local ??= (await loadJose()).createLocalJWKSet(jwks as Parameters<typeof import('jose').createLocalJWKSet>[0]);
    return local(header, token);
  };
  return { kids, getKey };
}

/** A rule's keys as the verifier reads them. */
export interface JwksSource {
  /** The keys in force; undefined when there are none (never fetched, or stale past the limit). */
  current(): KeySet | undefined;
  /** A token named a kid the keys lack: fetch again soon (rate limited). Nothing for keys from the snapshot. */
  unknownKid(): void;
}

/** Keys from the snapshot: parsed and imported once per snapshot that changes them. */
export class StaticJwks implements JwksSource {
  readonly #keys: KeySet;
  constructor(keys: KeySet) {
    this.#keys = keys;
  }
  current(): KeySet {
    return this.#keys;
  }
  unknownKid(): void {}
}

export interface RemoteJwksOptions {
  readonly uri: string;
  readonly refreshMs: number;
  readonly maxStaleMs: number;
  readonly clock?: AuthnClock;
  /** Least time between two fetches a token's unknown kid starts (default 30 s). */
  readonly cooldownMs?: number;
  /** How long one fetch may take (default 5 s). */
  readonly timeoutMs?: number;
  /** Larger answers are refused (default 256 KiB). */
  readonly maxBytes?: number;
  /** The keys changed (a fetch brought different ones, or they went stale): cached verdicts are void. */
  readonly changed: () => void;
  readonly fetched: (result: 'changed' | 'unchanged' | 'failed') => void;
  readonly log: (line: string) => void;
}

const RETRY_MIN_MS = 1000;
export const DEFAULT_KID_COOLDOWN_MS = 30_000;

/** A jwksUri, fetched in the background (see the file comment for when, and the failure policy). */
export class RemoteJwks implements JwksSource {
  readonly #o: RemoteJwksOptions;
  readonly #clock: AuthnClock;
  #keys: KeySet | undefined;
  #text = '';
  /** When the last good fetch ended; 0: never. */
  #goodAt = 0;
  /** When the last fetch started; -Infinity: never. */
  #startedAt = Number.NEGATIVE_INFINITY;
  #inFlight = false;
  #timer: unknown;
  #failures = 0;
  #closed = false;

  constructor(o: RemoteJwksOptions) {
    this.#o = o;
    this.#clock = o.clock ?? REAL_AUTHN_CLOCK;
  }

  /** Same settings: a new snapshot naming the same URL keeps this source, its keys and its timers. */
  sameAs(uri: string, refreshMs: number, maxStaleMs: number): boolean {
    return uri === this.#o.uri && refreshMs === this.#o.refreshMs && maxStaleMs === this.#o.maxStaleMs;
  }

  /** Starts fetching (once). */
  start(): void {
    if (this.#timer === undefined && !this.#inFlight) this.#fetchNow();
  }

  current(): KeySet | undefined {
    const keys = this.#keys;
    if (keys === undefined) return undefined;
    if (this.#clock.now() - this.#goodAt <= this.#o.maxStaleMs) return keys;
    // Past the staleness limit: the keys go, and so do verdicts made with them.
    this.#keys = undefined;
    this.#text = '';
    this.#o.log(
      `jwks ${this.#o.uri}: its last keys are older than ${this.#o.maxStaleMs} ms and no fetch succeeded since; tokens of this issuer are refused until one does`,
    );
    this.#o.changed();
    return undefined;
  }

  unknownKid(): void {
    if (this.#closed || this.#inFlight) return;
    if (this.#clock.now() - this.#startedAt < (this.#o.cooldownMs ?? DEFAULT_KID_COOLDOWN_MS)) return;
    this.#fetchNow();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#fetchNow();
    }, ms);
  }

  #fetchNow(): void {
    if (this.#closed || this.#inFlight) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#inFlight = true;
    this.#startedAt = this.#clock.now();
    fetchText(this.#o.uri, this.#o.timeoutMs ?? 5000, this.#o.maxBytes ?? 262_144).then(
      (text) => this.#settle(text),
      (err: unknown) => this.#settle(err instanceof Error ? err : new Error(String(err))),
    );
  }

  #settle(got: string | Error): void {
    this.#inFlight = false;
    if (this.#closed) return;
    const parsed = typeof got === 'string' ? parseJwks(got) : got.message;
    if (typeof parsed === 'string') {
      this.#o.fetched('failed');
      if (this.#failures === 0)
        this.#o.log(
          `jwks ${this.#o.uri}: fetch failed (${parsed}); ${this.#keys ? 'the last keys stay in use' : 'tokens of this issuer are refused until a fetch succeeds'}, retrying`,
        );
      this.#failures++;
      this.#schedule(Math.min(this.#o.refreshMs, RETRY_MIN_MS * 2 ** Math.min(this.#failures - 1, 20)));
      return;
    }
    const text = got as string;
    if (this.#failures > 0) this.#o.log(`jwks ${this.#o.uri}: fetched again after ${this.#failures} failed attempt(s)`);
    this.#failures = 0;
    this.#goodAt = this.#clock.now();
    if (text !== this.#text || this.#keys === undefined) {
      this.#text = text;
      this.#keys = keySetOf(parsed);
      this.#o.fetched('changed');
      this.#o.changed();
    } else {
      this.#o.fetched('unchanged');
    }
    this.#schedule(this.#o.refreshMs);
  }
}

/** GETs `uri` and resolves with its body, or rejects with a short reason (no body text in it). */
async function fetchText(uri: string, timeoutMs: number, maxBytes: number): Promise<string> {
  // node's own http(s), not fetch(): undici would add megabytes to every proxy for one GET every few minutes.
  const get = uri.startsWith('https:') ? (await import('node:https')).get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(uri, { headers: { accept: 'application/json' }, timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > maxBytes) {
        res.destroy();
        reject(new Error(`the answer is over ${maxBytes} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          res.destroy();
          reject(new Error(`the answer is over ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', (err) => reject(new Error((err as NodeJS.ErrnoException).code ?? 'the answer broke off')));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new Error((err as NodeJS.ErrnoException).code ?? err.message)));
  });
}
