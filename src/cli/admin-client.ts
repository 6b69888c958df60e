// What every command that calls the control plane's admin API shares: the
// `--admin-token-file` flag, finding the token (src/security/admin-token.ts: the flag,
// $TRELLIS_ADMIN_TOKEN, or the pointer the control plane at that address left), and one
// request function that sends it and turns a refusal into the table's error.
import { ERRORS, TrellisError, type ErrorCode } from '../errors.js';
import { adminHeaders, resolveAdminToken, type AdminTarget } from '../security/admin-token.js';

export type { AdminTarget } from '../security/admin-token.js';

/** parseFlags options for the token; spread them into a command's own. */
export const ADMIN_TOKEN_FLAGS = {
  'admin-token-file': { type: 'string' },
} as const;

/** The help line of {@link ADMIN_TOKEN_FLAGS}, its description at column `column`. */
export function adminTokenHelp(column: number): string {
  const row = (flag: string, text: string): string => `  ${flag.padEnd(column - 2)}${text}`;
  return [
    row('--admin-token-file F', "the admin API's token (default: $TRELLIS_ADMIN_TOKEN, else the token"),
    row('', 'of the control plane at that address, found in ~/.trellis/controls/)'),
  ].join('\n');
}

/** `http://host:port` from a `--control` value (a URL, or host:port). */
export function controlUrl(value: string): string {
  let base = value.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) base = `http://${base}`;
  return base;
}

/** The admin API at `url` with the token found for it; a --admin-token-file that cannot be read is TRELLIS_E_USAGE. */
export async function adminTarget(url: string, values: { readonly 'admin-token-file'?: string | undefined }): Promise<AdminTarget> {
  const tokenFile = values['admin-token-file'];
  try {
    return { url, token: await resolveAdminToken({ url, tokenFile }) };
  } catch (err) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `--admin-token-file: ${err instanceof Error ? err.message : String(err)}` });
  }
}

/** Why fetch failed, from its cause (ECONNREFUSED, …). */
function failure(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

/** A request to the admin API with the token; TRELLIS_E_CONTROL_UNREACHABLE when nothing answers. */
export async function adminFetch(target: AdminTarget, path: string, init: { method?: string; body?: string; timeoutMs: number }): Promise<Response> {
  try {
    return await fetch(`${target.url}${path}`, {
      method: init.method ?? 'GET',
      signal: AbortSignal.timeout(init.timeoutMs),
      headers: { ...adminHeaders(target.token), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: init.body } : {}),
    });
  } catch (err) {
    throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: target.url, reason: failure(err) });
  }
}

/**
 * The error an answer carries, rebuilt from its JSON body (`{code, params}`) when the
 * code is one of ours; undefined otherwise. Refusals of the credential come back so.
 */
export async function answerError(res: Response): Promise<TrellisError | undefined> {
  try {
    const { code, params } = (await res.json()) as { code?: string; params?: Record<string, unknown> };
    if (code && code in ERRORS && params) return new TrellisError(code as ErrorCode, params);
  } catch {
    // Not JSON: not one of ours.
  }
  return undefined;
}

/**
 * GETs JSON. A 401/403 is the credential's refusal (the table's error, which says where
 * the token is); any other failure is TRELLIS_E_CONTROL_UNREACHABLE. With `missing`,
 * a 404 resolves undefined instead.
 */
export async function adminGetJson<T>(target: AdminTarget, path: string, timeoutMs: number, missing?: 'undefined-on-404'): Promise<T | undefined> {
  const res = await adminFetch(target, path, { timeoutMs });
  if (res.status === 401 || res.status === 403) {
    throw (await answerError(res)) ?? new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: target.url, reason: `GET ${path} answered ${res.status}` });
  }
  if (res.status === 404 && missing) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: target.url, reason: `GET ${path} answered ${res.status}` });
  }
  try {
    return (await res.json()) as T;
  } catch {
    throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: target.url, reason: `GET ${path} did not answer JSON` });
  }
}
