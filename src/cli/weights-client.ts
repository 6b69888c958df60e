// The admin API client of `trellis route weights` and `trellis canary`: reads a
// service's split, asks the control plane to change it, and waits until every proxy
// that calls the service has acknowledged a snapshot with the change (the control
// plane names the version to wait for; /v1/proxies tells each proxy's acked version).
import { ERRORS, TrellisError, type ErrorCode } from '../errors.js';
import type { ProxyView } from '../api/admin.js';
import type { CallerVersion, WeightsChange, WeightsView } from '../api/admin.js';
import type { Weights } from '../api/admin.js';
import { parseHostPort } from './args.js';
import { ADMIN_TOKEN_FLAGS, adminFetch, adminTarget, adminTokenHelp, answerError, type AdminTarget } from './admin-client.js';

export type { Weights } from '../control/sources/route-weights.js';
export type { WeightsView, WeightsChange } from '../api/admin.js';

/** The flags that say where the control plane is. */
export const ADMIN_FLAGS = {
  admin: { type: 'string' },
  control: { type: 'string' },
  ...ADMIN_TOKEN_FLAGS,
} as const;

/** The help lines of {@link ADMIN_FLAGS}, descriptions starting at column `column`. */
export function adminFlagsHelp(column: number): string {
  const row = (flag: string, text: string): string => `  ${flag.padEnd(column - 2)}${text}`;
  return [
    row('--admin HOST:PORT', "the control plane's admin API (default 127.0.0.1:15000, where"),
    row('', '`trellis up` and `trellis control` put it)'),
    row('--control URL', 'the same, as a URL (as `trellis status` takes it)'),
    adminTokenHelp(column),
  ].join('\n');
}

const DEFAULT_ADMIN = 'http://127.0.0.1:15000';
const REQUEST_TIMEOUT_MS = 10_000;
const ACK_POLL_MS = 10;

/** The admin API's base URL from --admin or --control. */
export function adminBase(values: { admin?: string | undefined; control?: string | undefined }): string {
  if (values.admin !== undefined && values.control !== undefined) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'give --admin or --control, not both' });
  }
  if (values.admin !== undefined) {
    const { host, port } = parseHostPort(values.admin, '--admin');
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }
  let base = (values.control ?? DEFAULT_ADMIN).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) base = `http://${base}`;
  return base;
}

/** The admin API from --admin or --control, with the token found for it. */
export function adminApi(values: { admin?: string | undefined; control?: string | undefined; 'admin-token-file'?: string | undefined }): Promise<AdminTarget> {
  return adminTarget(adminBase(values), values);
}

/** A request to the admin API; its error answers become the matching TrellisError. */
async function call<T>(target: AdminTarget, method: string, path: string, body?: unknown): Promise<T> {
  const base = target.url;
  const res = await adminFetch(target, path, { method, timeoutMs: REQUEST_TIMEOUT_MS, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (res.status === 401 || res.status === 403) {
    throw (await answerError(res)) ?? new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: base, reason: `${method} ${path} answered ${res.status}` });
  }
  let answer: unknown;
  try {
    answer = await res.json();
  } catch {
    throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', {
      url: base,
      reason: `${method} ${path} answered ${res.status} without JSON; is this a Trellis control plane?`,
    });
  }
  if (res.ok) return answer as T;
  const { code, message, params } = answer as { code?: string; message?: string; params?: Record<string, unknown> };
  // A name that does not exist, or weights that don't make sense, are the caller's mistake (exit 2).
  if (res.status === 400 || res.status === 404) throw new TrellisError('TRELLIS_E_USAGE', { reason: message ?? `${method} ${path} answered ${res.status}` });
  if (code && code in ERRORS && params) throw new TrellisError(code as ErrorCode, params);
  throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: base, reason: `${method} ${path} answered ${res.status}: ${message ?? ''}` });
}

export function readWeights(base: AdminTarget, service: string): Promise<WeightsView> {
  return call<WeightsView>(base, 'GET', `/v1/services/${encodeURIComponent(service)}/weights`);
}

/** A change that every proxy calling the service has acknowledged. */
export interface AppliedWeights {
  readonly change: WeightsChange;
  /** From sending the request to the last ACK, ms. */
  readonly elapsedMs: number;
  readonly acked: readonly CallerVersion[];
  /** Callers that disconnected meanwhile: they get the change when they reconnect. */
  readonly disconnected: readonly string[];
}

/**
 * Sets the weights and waits for the ACKs. TRELLIS_E_SNAPSHOT_REJECTED when a proxy
 * NACKs the change, TRELLIS_E_ACK_TIMEOUT when some don't answer within `timeoutMs`.
 */
export async function applyWeights(base: AdminTarget, service: string, weights: Weights, timeoutMs: number): Promise<AppliedWeights> {
  const t0 = performance.now();
  const change = await call<WeightsChange>(base, 'PUT', `/v1/services/${encodeURIComponent(service)}/weights`, { weights });
  const deadline = t0 + timeoutMs;
  const waiting = new Map(change.callers.map((c) => [c.id, c]));
  const acked: CallerVersion[] = [];
  const disconnected: string[] = [];
  for (;;) {
    if (change.sent) {
      const { proxies } = await call<{ proxies: ProxyView[] }>(base, 'GET', '/v1/proxies');
      for (const [id, c] of waiting) {
        const p = proxies.find((x) => x.id === id);
        if (!p?.connected) {
          disconnected.push(id);
          waiting.delete(id);
        } else if ((p.ackedVersion ?? 0) >= c.version) {
          acked.push(c);
          waiting.delete(id);
        } else if (p.lastNack && p.lastNack.version >= c.version) {
          throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', {
            version: p.lastNack.version,
            reason: `proxy ${id} rejected the change (it stays on its last good snapshot): ${p.lastNack.error}`,
          });
        }
      }
    }
    if (waiting.size === 0 && change.sent) break;
    if (performance.now() >= deadline) {
      const late = change.sent ? [...waiting.keys()].join(', ') : 'the control plane had not sent it to every caller, so the proxies';
      throw new TrellisError('TRELLIS_E_ACK_TIMEOUT', { service, proxies: late, ms: Math.round(timeoutMs) });
    }
    await new Promise((r) => setTimeout(r, ACK_POLL_MS));
  }
  return { change, elapsedMs: performance.now() - t0, acked, disconnected };
}

/** `v1=90 v2=10`. */
export function weightsText(w: Weights): string {
  return Object.entries(w)
    .map(([v, n]) => `${v}=${n}`)
    .join(' ');
}

/** A weight as a share of the total: `90%`, `33.3%`. */
export function share(w: Weights, version: string): string {
  const total = Object.values(w).reduce((a, b) => a + b, 0);
  if (total === 0) return '-';
  const pct = ((w[version] ?? 0) / total) * 100;
  return `${Number.isInteger(pct) ? pct : pct.toFixed(1)}%`;
}

/** "acknowledged by 2 proxies that call backend (frontend-0, trellis-ingress) in 63 ms". */
export function ackText(service: string, a: AppliedWeights): string {
  const ids = a.acked.map((c) => c.id);
  const gone = a.disconnected.length > 0 ? `; ${a.disconnected.join(', ')} disconnected meanwhile and get it when they reconnect` : '';
  if (ids.length === 0) return `no connected proxy calls ${service}${gone}`;
  return `acknowledged by ${ids.length} ${ids.length === 1 ? 'proxy' : 'proxies'} that call ${service} (${ids.join(', ')}) in ${Math.round(a.elapsedMs)} ms${gone}`;
}
