// Prometheus HTTP service discovery (`http_sd_configs`): every connected proxy's
// metrics endpoint, its admin server, as a target group with the proxy's labels. A
// Prometheus pointed at `/v1/prometheus/targets` scrapes the whole mesh and follows
// proxies as they come and go (`trellis up` starts one so; any other can be pointed here).
import { isIP } from 'node:net';
import type { PrometheusTargetGroup } from '../../api/admin.js';
import type { MeshModel, ProxyState } from '../model.js';

/** Where a proxy serves its metrics (sidecar.ts's admin server). */
export const PROXY_METRICS_PATH = '/metrics';

/** A DNS name as Prometheus takes a target host: letters, digits, `-`, `.`, at most 253 characters. */
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/**
 * `host:port` for a target, or undefined when the proxy's hello gave an address
 * Prometheus could not use. The address is what a proxy said of itself (wire.ts checks
 * only its shape), and one odd entry must not spoil the list for every other proxy.
 */
export function targetAddress(p: ProxyState): string | undefined {
  const { host, port } = p.info.admin;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  // A proxy listening on every address is scraped on loopback (the local runner's case).
  if (host === '0.0.0.0' || host === '::') return `${host === '::' ? '[::1]' : '127.0.0.1'}:${port}`;
  const ip = isIP(host);
  if (ip === 6) return `[${host}]:${port}`;
  if (ip === 4 || HOSTNAME.test(host)) return `${host}:${port}`;
  return undefined;
}

/**
 * One group per connected proxy. Labels: `service`, `version`, `instance_id` (the proxy
 * id) and `kind` (sidecar or gateway); they name the target, while the series' own labels
 * (proxy_service, destination, …) never clash with them. Issue 12's namespaces will add
 * a `namespace` label here. Proxies that are disconnected are left out: a restarted
 * control plane lists each again as it reconnects.
 */
export function prometheusTargets(model: MeshModel): PrometheusTargetGroup[] {
  const groups: PrometheusTargetGroup[] = [];
  const proxies = model.proxies().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const p of proxies) {
    if (!p.connected) continue;
    const address = targetAddress(p);
    if (address === undefined) continue;
    groups.push({
      targets: [address],
      labels: { __metrics_path__: PROXY_METRICS_PATH, service: p.service, version: p.version, instance_id: p.id, kind: p.kind },
    });
  }
  return groups;
}
