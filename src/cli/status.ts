// `trellis status`: one table of a running mesh, read from the control plane's admin API.
import type { ConfigView, ProxyView, ServiceView } from '../api/admin.js';
import { DEFAULT_NAMESPACE, splitServiceKey } from '../api/names.js';
import type { BreakerView, EndpointView } from '../api/views.js';
import { parseFlags } from './args.js';
import { ADMIN_TOKEN_FLAGS, adminGetJson, adminTarget, adminTokenHelp, controlUrl, type AdminTarget } from './admin-client.js';

export const help = `Usage: trellis status [--control URL] [--admin-token-file FILE] [--json]

Shows every service of a running mesh: its versions and instances, where each listens,
its health, and which config version its proxy has accepted; each proxy's inbound mutual
TLS mode (STRICT, PERMISSIVE, DISABLE) and its certificate's identity and expiry; then the endpoints some
proxy's outlier detection has ejected and the circuit breakers that are open.

Options:
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --json          print the raw JSON of the admin API instead of a table
${adminTokenHelp(18)}
`;

const TIMEOUT_MS = 3000;

async function getJson<T>(target: AdminTarget, path: string): Promise<T> {
  return (await adminGetJson<T>(target, path, TIMEOUT_MS)) as T;
}

function addr(hp: { host: string; port: number } | null | undefined): string {
  return hp ? `${hp.host}:${hp.port}` : '-';
}

/** `acked/sent`, with the NACK reason when the proxy's latest answer was a rejection. */
export function configColumn(p: ProxyView | undefined): string {
  if (!p) return '-';
  const v = (n: number | null): string => (n === null ? '-' : `v${n}`);
  let text = `${v(p.ackedVersion)}/${v(p.sentVersion)}`;
  if (p.lastNack && (p.ackedVersion === null || p.lastNack.version > p.ackedVersion)) {
    text += ` NACK v${p.lastNack.version}: ${p.lastNack.error}`;
  }
  if (!p.connected) text += ' (disconnected)';
  return text;
}

function healthColumn(h: ServiceView['instances'][number]['health']): string {
  if (h.status !== 'unhealthy' || !h.lastError) return h.status;
  const err = h.lastError.length > 50 ? `${h.lastError.slice(0, 47)}...` : h.lastError;
  return `unhealthy (${err})`;
}

/** Renders rows as left-aligned columns. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function renderStatus(services: ServiceView[], proxies: ProxyView[], config: ConfigView): string {
  const byId = new Map(proxies.map((p) => [p.id, p]));
  // A NAMESPACE column only when some service is outside default, so a mesh without
  // namespaces reads as it always did.
  const namespaced = services.some((s) => s.namespace !== undefined);
  const lead = (s: ServiceView): string[] => (namespaced ? [s.namespace ?? DEFAULT_NAMESPACE, splitServiceKey(s.name).name] : [s.name]);
  const rows: string[][] = [];
  for (const s of services) {
    if (s.instances.length === 0) {
      rows.push([...lead(s), s.versions.map((v) => v.name).join(','), '-', '-', '-', 'no instances', '-']);
      continue;
    }
    for (const i of s.instances) {
      rows.push([...lead(s), i.version, i.id, addr(i.app), addr(i.inbound), healthColumn(i.health), configColumn(byId.get(i.id))]);
    }
  }
  for (const p of proxies.filter((p) => p.kind === 'gateway')) {
    rows.push([...(namespaced ? [DEFAULT_NAMESPACE] : []), `${p.service} (gateway)`, p.version, p.id, '-', '-', '-', configColumn(p)]);
  }
  let out = table([...(namespaced ? ['NAMESPACE'] : []), 'SERVICE', 'VERSION', 'INSTANCE', 'APP', 'INBOUND', 'HEALTH', 'CONFIG (acked/sent)'], rows);
  if (config.reloadFailed) {
    const inForce = config.restoredFrom
      ? `the last good config (saved at ${config.restoredFrom.savedAt ?? '?'} in ${config.restoredFrom.file})`
      : `the config loaded at ${config.loadedAt ?? '?'}`;
    out += `\n\nThe latest config reload failed (${config.reloadFailed.at ?? '?'}); ${inForce} stays in force:`;
    for (const p of config.reloadFailed.problems) out += `\n  ${p.text}`;
  }
  return `${out}\n`;
}

/** What one proxy's admin server says at /balancing. */
export interface BalancingReport {
  readonly id: string;
  readonly endpoints: readonly EndpointView[];
  readonly breakers: readonly BreakerView[];
}

/** Each proxy's /balancing; a proxy that does not answer in time is left out (its row says so). */
export async function fetchBalancing(proxies: readonly ProxyView[]): Promise<(BalancingReport | { id: string; error: string })[]> {
  return Promise.all(
    proxies
      .filter((p) => p.connected)
      .map(async (p) => {
        try {
          const res = await fetch(`http://${p.admin.host}:${p.admin.port}/balancing`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
          if (!res.ok) {
            await res.body?.cancel();
            return { id: p.id, error: `answered ${res.status}` };
          }
          return (await res.json()) as BalancingReport;
        } catch (err) {
          return { id: p.id, error: err instanceof Error ? err.message : String(err) };
        }
      }),
  );
}

/**
 * The passive-health section: endpoints some proxy has ejected, and circuit breakers
 * that are open or have refused requests. Empty when everything is in rotation.
 */
export function renderBalancing(reports: readonly (BalancingReport | { id: string; error: string })[]): string {
  const ejected: string[][] = [];
  const breakers: string[][] = [];
  const unreachable: string[] = [];
  for (const r of reports) {
    if ('error' in r) {
      unreachable.push(`${r.id} (${r.error})`);
      continue;
    }
    const seen = new Set<string>();
    for (const e of r.endpoints) {
      const key = `${e.service}\0${e.id}`;
      if (!e.ejected || seen.has(key)) continue;
      seen.add(key);
      ejected.push([r.id, e.service, e.id, e.address, `${e.reason ?? '?'}, back in ${Math.ceil(e.ejectedForMs / 1000)}s`, String(e.ejections)]);
    }
    for (const b of r.breakers) {
      if (!b.open && b.requestOverflows === 0 && b.retryOverflows === 0 && b.pendingOverflows === 0) continue;
      breakers.push([
        r.id,
        b.service,
        b.open ? 'open' : 'closed',
        `${b.connections}/${b.maxConnections}`,
        `${b.pending}/${b.maxPendingRequests}`,
        `${b.requests}/${b.maxRequests}`,
        `${b.retries}/${b.maxRetries}`,
        `${b.pendingOverflows}/${b.requestOverflows}/${b.retryOverflows}`,
      ]);
    }
  }
  let out = '';
  if (ejected.length > 0)
    out += `\nEjected endpoints (outlier detection, as each calling proxy sees them):\n${table(['PROXY', 'DESTINATION', 'ENDPOINT', 'ADDRESS', 'WHY', 'EJECTIONS'], ejected)}\n`;
  if (breakers.length > 0)
    out += `\nCircuit breakers that are open or refused requests:\n${table(['PROXY', 'DESTINATION', 'STATE', 'CONNECTIONS', 'PENDING', 'REQUESTS', 'RETRIES', 'OVERFLOWS (pending/requests/retries)'], breakers)}\n`;
  if (unreachable.length > 0) out += `\nNo balancing state from: ${unreachable.join(', ')}\n`;
  return out;
}

/** What `trellis status` shows of a proxy's security: its inbound PeerAuthentication mode and the certificate the control plane issued it. */
export interface ProxySecurity {
  readonly id: string;
  readonly service: string;
  /** The inbound mode its snapshot says (`STRICT`, `PERMISSIVE`, `DISABLE`; a multi-port service's ports as `port=MODE`); null: not known (no answer, or a gateway). */
  readonly mtls: string | null;
  /** The last certificate the control plane issued it (its public part). */
  readonly certificate: { readonly spiffeId: string; readonly notAfter: string } | null;
}

/** A proxy's inbound mTLS mode, from the snapshot it holds (`/config`, loopback only); null when it does not answer. */
async function inboundMode(p: ProxyView): Promise<string | null> {
  if (!p.connected || p.kind === 'gateway') return null;
  try {
    const res = await fetch(`http://${p.admin.host}:${p.admin.port}/config`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    const body = (await res.json()) as { snapshot?: { mtls?: { mode?: unknown; ports?: { port: number; mode: string }[] } } | null };
    const m = body.snapshot?.mtls;
    // A snapshot that says nothing: the sidecar takes both (sidecar.ts #inboundMode).
    if (m === undefined || typeof m.mode !== 'string') return 'PERMISSIVE';
    const ports = Array.isArray(m.ports) ? m.ports.filter((x) => x.mode !== m.mode).map((x) => `${x.port}=${x.mode}`) : [];
    return [m.mode, ...ports].join(' ');
  } catch {
    return null;
  }
}

/** Each proxy's inbound mode and issued certificate. */
export async function fetchSecurity(target: AdminTarget, proxies: readonly ProxyView[]): Promise<ProxySecurity[]> {
  const issued = await getJson<{ certificates?: { proxy: string; spiffeId: string; notAfter: string }[] }>(target, '/v1/identity').catch(() => ({
    certificates: [],
  }));
  const certs = new Map((issued.certificates ?? []).map((c) => [c.proxy, { spiffeId: c.spiffeId, notAfter: c.notAfter }]));
  return Promise.all(proxies.map(async (p) => ({ id: p.id, service: p.service, mtls: await inboundMode(p), certificate: certs.get(p.id) ?? null })));
}

/** How long until `notAfter`, as `23h 59m` (or `EXPIRED`). */
function remaining(notAfter: string, now: number): string {
  const ms = Date.parse(notAfter) - now;
  if (!Number.isFinite(ms)) return '?';
  if (ms <= 0) return 'EXPIRED';
  const m = Math.floor(ms / 60_000);
  return m >= 60 * 48 ? `${Math.floor(m / 1440)}d` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** The mutual TLS section: each proxy's inbound mode, its SPIFFE ID and when its certificate expires. */
export function renderSecurity(rows: readonly ProxySecurity[], now = Date.now()): string {
  if (rows.length === 0) return '';
  const cells = rows.map((r) => [
    r.id,
    r.mtls ?? '-',
    r.certificate?.spiffeId ?? 'none issued',
    r.certificate === null ? '-' : `${r.certificate.notAfter} (${remaining(r.certificate.notAfter, now)})`,
  ]);
  return `
Mutual TLS (inbound mode, and the certificate the control plane issued):
${table(['PROXY', 'INBOUND MTLS', 'IDENTITY', 'CERTIFICATE EXPIRES'], cells)}
`;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    { control: { type: 'string', default: 'http://127.0.0.1:15000' }, json: { type: 'boolean', default: false }, ...ADMIN_TOKEN_FLAGS },
    false,
    'status',
  );
  const base = await adminTarget(controlUrl(values.control), values);
  const [services, proxies, config] = await Promise.all([
    getJson<{ services: ServiceView[] }>(base, '/v1/services'),
    getJson<{ proxies: ProxyView[] }>(base, '/v1/proxies'),
    getJson<ConfigView>(base, '/v1/config'),
  ]);
  const [balancing, security] = await Promise.all([fetchBalancing(proxies.proxies), fetchSecurity(base, proxies.proxies)]);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ services: services.services, proxies: proxies.proxies, config, balancing, security }, null, 2)}\n`);
  } else {
    process.stdout.write(renderStatus(services.services, proxies.proxies, config) + renderSecurity(security) + renderBalancing(balancing));
  }
  return 0;
}
