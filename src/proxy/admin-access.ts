// What a proxy's own admin server (sidecar.ts) lets whom read. It changes nothing: it
// answers GET and HEAD only, so no request can steer a proxy through it (its state
// comes from the control plane's stream alone). It holds no secret either: the
// workload key never leaves WorkloadIdentity and the bootstrap credential is not shown.
// What it shows is of two kinds:
//  - /metrics, /ready, /live and /app-health/..., for anyone who reaches it: the Prometheus `trellis up` runs
//    scrapes /metrics without a credential (as Linkerd's proxies serve :4191/metrics and
//    Istio's sidecars :15090/stats/prometheus to their scrapers), and probes read /ready;
//  - /config (the proxy's snapshot: the services it may call, their endpoints and
//    routes), /balancing, /identity, /tap (live requests) and /explain(/inbound), only to a peer on loopback:
//    the same machine, where the CLI runs (`trellis status`, `trellis load --from`). An
//    admin server bound to another address for remote scraping (--admin 0.0.0.0:PORT)
//    still keeps these local, as Envoy's admin (/config_dump) listens on localhost only
//    in Istio's sidecars while their metrics port is open.
// The default bind address is 127.0.0.1 (cli/proxy.ts), which keeps all of it local.
import type { IncomingMessage } from 'node:http';
import { isLoopbackAddress } from '../security/loopback.js';
import { TrellisError } from '../errors.js';

/** The paths anyone who reaches the admin server may read. */
export const PUBLIC_ADMIN_PATHS: ReadonlySet<string> = new Set(['/metrics', '/ready', '/live']);

/** Undefined when the request may be answered; else the error to answer it with. */
export function adminRefusal(req: IncomingMessage, path: string): TrellisError | undefined {
  // POST /explain and /explain/inbound carry the request to explain in their body; they compute, and change nothing.
  if (req.method !== 'GET' && req.method !== 'HEAD' && !(req.method === 'POST' && (path === '/explain' || path === '/explain/inbound'))) {
    return new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path, allowed: "GET or HEAD (a proxy's admin server is read-only)", method: req.method });
  }
  // /app-health/...: the kubelet's probes of the app, from the node's address (k8s/inject.ts).
  if (PUBLIC_ADMIN_PATHS.has(path) || path.startsWith('/app-health/') || isLoopbackAddress(req.socket.remoteAddress)) return undefined;
  return new TrellisError('TRELLIS_E_ADMIN_LOOPBACK_ONLY', { path });
}
