// The dashboard's login link. Whoever holds the admin token (the runner, the CLI) can
// make it; the control plane checks it. The link carries a login code derived from the
// token (an HMAC), never the token itself, in the URL fragment: a fragment is not sent
// to the server, so it stays out of request lines, logs and Referer headers. The page
// trades the code for an HttpOnly, SameSite=Strict session cookie
// (src/control/dashboard/dashboard-auth.ts) and drops it from the address bar.
// Neutral: imported by the control plane and the runner alike.
import { createHmac } from 'node:crypto';

/** Where the control plane serves the dashboard. */
export const DASHBOARD_PATH = '/dashboard/';

/** The login code of a control plane whose admin token is `adminToken`. */
export function dashboardLoginCode(adminToken: string): string {
  return createHmac('sha256', adminToken).update('trellis dashboard login v1').digest('base64url');
}

/** The dashboard's address without a credential (what state.json may hold). */
export function dashboardUrl(controlUrl: string): string {
  return `${controlUrl.replace(/\/+$/, '')}${DASHBOARD_PATH}`;
}

/** The link that opens the dashboard logged in: print it to the person who started the mesh, store it nowhere. */
export function dashboardLoginUrl(controlUrl: string, adminToken: string): string {
  return `${dashboardUrl(controlUrl)}#login=${dashboardLoginCode(adminToken)}`;
}
