// Who may use the dashboard: the one place its credential is checked, kept small so that
// it joins the admin API's lock (the admin token) at one seam.
//
// The login link `trellis up` prints carries a login code (an HMAC of the admin token,
// src/security/dashboard-login.ts) in its fragment. The page POSTs the code once and
// gets a session cookie: HttpOnly (a script, even an injected one, cannot read it),
// SameSite=Strict (no other site's page makes the browser send it, which also defeats
// DNS rebinding: a rebound name has its own cookie jar), Path=/dashboard. The cookie is
// stateless, `<expiry ms>.<HMAC of the admin token over the expiry>`: nothing to keep
// per session, and a new admin token ends every session. Jupyter's `?token=` link works
// the same way, but keeps the token in the query, where logs and history see it.
//
// Mutating calls also need the `x-trellis-dashboard` header (a custom header a
// cross-site page cannot send without a CORS preflight, which is never granted) and, when
// the browser sends an Origin, one equal to the Host it asked: the OWASP CSRF cheat
// sheet's "custom request header" and "verify origin" defenses, beside SameSite.
//
// Clients other than the page (the CLI, tests) may instead send the admin token as
// `Authorization: Bearer`, as to the admin API.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { dashboardLoginCode } from '../../security/dashboard-login.js';

export const SESSION_COOKIE = 'trellis_dashboard';
/** The header every mutating call must carry. */
export const CSRF_HEADER = 'x-trellis-dashboard';
/** A working day: the link `trellis up` printed logs in again after it. */
export const SESSION_TTL_MS = 12 * 3600_000;

export type AuthResult = 'ok' | 'missing' | 'wrong';

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export interface DashboardAuthOptions {
  /** The admin token (the admin API's credential). */
  readonly token: string;
  /** ms clock (tests). */
  readonly now?: () => number;
}

export class DashboardAuth {
  readonly #token: string;
  readonly #code: string;
  readonly #now: () => number;

  constructor(o: DashboardAuthOptions) {
    this.#token = o.token;
    this.#code = dashboardLoginCode(o.token);
    this.#now = o.now ?? Date.now;
  }

  #sign(expires: number): string {
    return createHmac('sha256', this.#token).update(`trellis dashboard session v1 ${expires}`).digest('base64url');
  }

  /** True for the login code of this control plane's token. */
  loginCodeValid(code: unknown): boolean {
    return typeof code === 'string' && equal(code, this.#code);
  }

  /** A `Set-Cookie` value for a new session. */
  newSessionCookie(): string {
    const expires = this.#now() + SESSION_TTL_MS;
    return `${SESSION_COOKIE}=${expires}.${this.#sign(expires)}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}`;
  }

  /** A `Set-Cookie` value that ends the session. */
  static clearCookie(): string {
    return `${SESSION_COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  /** Whether the request carries a live session cookie or the admin token. */
  authenticate(req: IncomingMessage): AuthResult {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      return m && equal(m[1]!, this.#token) ? 'ok' : 'wrong';
    }
    const value = cookie(req, SESSION_COOKIE);
    if (value === undefined || value === '') return 'missing';
    const dot = value.indexOf('.');
    const expires = Number(value.slice(0, dot));
    if (dot < 1 || !Number.isSafeInteger(expires) || expires <= this.#now()) return 'wrong';
    return equal(value.slice(dot + 1), this.#sign(expires)) ? 'ok' : 'wrong';
  }

  /**
   * Whether a state-changing request came from the dashboard's own page (or a non-browser
   * client): it carries the custom header, and any Origin it has names the Host it asked.
   */
  static sameOrigin(req: IncomingMessage): boolean {
    if (req.headers[CSRF_HEADER] !== '1') return false;
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    const host = req.headers.host;
    return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
  }
}
