// The dashboard's calls to the control plane (/dashboard/api/*). The session is an
// HttpOnly cookie the browser sends by itself; this file never sees a credential but
// the one-time trade of the login code from the URL fragment. Every change carries the
// x-trellis-dashboard header the control plane requires of changes (CSRF defense).
// Shapes: src/api/dashboard.ts.

const BASE = '/dashboard/api';

/** An answer other than 2xx: `status` and the control plane's `{code, message}`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `answered ${status}`);
    this.status = status;
    this.code = body?.code ?? null;
  }
}

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-trellis-dashboard'] = '1';
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

export const api = {
  mesh: () => call('GET', '/mesh'),
  stats: () => call('GET', '/stats'),
  traces: () => call('GET', '/traces?limit=20'),
  trace: (id) => call('GET', `/traces/${encodeURIComponent(id)}`),
  bench: () => call('GET', '/bench'),
  setWeights: (service, weights) => call('PUT', `/services/${encodeURIComponent(service)}/weights`, { weights }),
  startCanary: (req) => call('POST', '/canaries', req),
  canary: (service, action) => call('POST', `/canaries/${encodeURIComponent(service)}/${action}`),
  logout: () => call('DELETE', '/session'),
};

/**
 * Trades a `#login=CODE` fragment for a session cookie, then takes the code out of the
 * address bar and history. Resolves true when a login happened.
 */
export async function loginFromFragment() {
  const m = /(?:^#|&)login=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (!m) return false;
  history.replaceState(null, '', location.pathname + location.search);
  await call('POST', '/session', { code: m[1] });
  return true;
}
