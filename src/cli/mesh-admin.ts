// How the viz commands (top, tap, routes, explain, logs) reach a running mesh: the
// control plane's admin API lists the proxies, and each proxy's admin server answers
// for itself. One place holds the admin credential every request carries.
import { TrellisError } from '../errors.js';
import { adminTarget, controlUrl } from './admin-client.js';
import type { ProxyView } from '../api/admin.js';

/** Where the control plane is, and the credential its admin API (and the proxies' /tap, /explain) take. */
export interface AdminAccess {
  readonly control: string;
  /** The mesh's admin credential; undefined: none (an unlocked mesh). */
  readonly credential: string | undefined;
}

const TIMEOUT_MS = 5000;

/**
 * The access for `--control URL`, with the admin API's token found as every command
 * finds it (admin-client.ts: --admin-token-file, $TRELLIS_ADMIN_TOKEN, or the pointer the
 * control plane at that address left). The proxies' /tap and /explain answer loopback
 * peers only (proxy/admin-access.ts); the token goes along to a proxy that asks for one.
 */
export async function adminAccess(control: string, values: { readonly 'admin-token-file'?: string | undefined } = {}): Promise<AdminAccess> {
  const url = controlUrl(control);
  const target = await adminTarget(url, values);
  return { control: url, credential: target.token };
}

/** The headers every admin request carries. */
export function adminHeaders(a: AdminAccess): Record<string, string> {
  return a.credential === undefined ? {} : { authorization: `Bearer ${a.credential}` };
}

function unreachable(url: string, err: unknown): TrellisError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const reason = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  return new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason });
}

/** GETs (or POSTs `body`) JSON from `url`; an answer that is not 2xx is an error naming its status and message. */
export async function adminJson<T>(a: AdminAccess, url: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...adminHeaders(a), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw unreachable(url, err);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // not JSON: the text as it is
    }
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: `answered ${res.status}: ${message}` });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: 'did not answer JSON' });
  }
}

/** Every proxy the control plane knows. */
export async function listProxies(a: AdminAccess): Promise<ProxyView[]> {
  return (await adminJson<{ proxies: ProxyView[] }>(a, `${a.control}/v1/proxies`)).proxies;
}

/** The connected proxies of `service` (its sidecars, or a gateway of that name); `instance` picks one. */
export async function proxiesOf(a: AdminAccess, service: string, instance?: string): Promise<ProxyView[]> {
  const all = await listProxies(a);
  const found = all.filter((p) => p.connected && p.service === service && (instance === undefined || p.id === instance));
  if (found.length === 0) {
    const known = [...new Set(all.filter((p) => p.connected).map((p) => p.service))].sort().join(', ') || 'none';
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `no connected proxy of ${service}${instance === undefined ? '' : ` with id ${instance}`}; services with proxies: ${known}`,
    });
  }
  return found;
}

/** The URL of `path` on a proxy's admin server. */
export function proxyUrl(p: ProxyView, path: string): string {
  const host = p.admin.host.includes(':') ? `[${p.admin.host}]` : p.admin.host;
  return `http://${host}:${p.admin.port}${path}`;
}

/**
 * The lines of a streamed JSON-lines answer (a proxy's /tap), parsed, until it ends or
 * `signal` aborts. A line that is not JSON is skipped.
 */
export async function* jsonLines(a: AdminAccess, url: string, signal: AbortSignal): AsyncGenerator<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { headers: adminHeaders(a), signal });
  } catch (err) {
    if (signal.aborted) return;
    throw unreachable(url, err);
  }
  if (!res.ok || res.body === null) {
    const text = await res.text().catch(() => '');
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // not JSON
    }
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: `answered ${res.status}: ${message}` });
  }
  const decoder = new TextDecoder();
  let pending = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          yield JSON.parse(line) as unknown;
        } catch {
          // a broken line: skipped
        }
      }
    }
  } catch (err) {
    if (!signal.aborted) throw unreachable(url, err);
  }
}
