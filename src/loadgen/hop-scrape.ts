// Reads the mesh for the bottleneck account (hop-metrics.ts): the call graph from the
// control plane's /v1/services, the proxies from /v1/proxies, and every proxy's
// /metrics, at the start and the end of each step of a sweep. `trellis canary` reads
// the proxies' metrics through here too.
import { TrellisError } from '../errors.js';
import type { AdminTarget } from '../security/admin-token.js';
import { fetchJson, INGRESS_PROXY, type HostPort } from './mesh-target.js';
import { proxyCounters, type HopTopology, type MeshCounters, type ProxyCounters } from './hop-metrics.js';
import { isLoopbackHost } from './target.js';

const SCRAPE_TIMEOUT_MS = 2000;

interface ServiceEntry {
  name: string;
  protocol?: string;
  upstreams?: { service: string }[];
}
interface ProxyEntry {
  id: string;
  service: string;
  admin?: HostPort;
}

/** Reads every proxy's counters; one per mesh, for one sweep. */
export interface MeshProbe {
  readonly topology: HopTopology;
  read(): Promise<MeshCounters>;
}

function adminUrl(hp: HostPort): string | undefined {
  const host = hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host;
  if (!isLoopbackHost(host)) return undefined;
  return `http://${host.includes(':') ? `[${host}]` : host}:${hp.port}/metrics`;
}

async function fetchText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (!res.ok) {
    await res.body?.cancel();
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: `answered ${res.status}` });
  }
  return res.text();
}

/** One proxy's `/metrics` text. */
export interface ProxyMetricsText {
  readonly id: string;
  readonly service: string;
  readonly text: string;
}

/**
 * Reads the `/metrics` of every proxy the control plane at `control` lists (listed
 * again at every call, so a restarted proxy's new admin port is found). A proxy that
 * does not answer, or is not on loopback, is left out.
 */
export async function readProxyMetrics(control: AdminTarget): Promise<ProxyMetricsText[]> {
  const { proxies } = (await fetchJson(`${control.url.replace(/\/+$/, '')}/v1/proxies`, control.token)) as { proxies: ProxyEntry[] };
  const read = await Promise.all(
    proxies.map(async (p): Promise<ProxyMetricsText | undefined> => {
      const url = p.admin ? adminUrl(p.admin) : undefined;
      if (!url) return undefined;
      try {
        return { id: p.id, service: p.service, text: await fetchText(url) };
      } catch {
        return undefined;
      }
    }),
  );
  return read.filter((p): p is ProxyMetricsText => p !== undefined);
}

/**
 * The probe of the mesh behind `control`, for load on `target` entering by `from`'s
 * sidecar (or the ingress gateway).
 */
export async function openMeshProbe(control: AdminTarget, target: string, from: string | undefined): Promise<MeshProbe> {
  const base = { url: control.url.replace(/\/+$/, ''), token: control.token };
  const { services } = (await fetchJson(`${base.url}/v1/services`, base.token)) as { services: ServiceEntry[] };
  const topology: HopTopology = {
    services: services.map((s) => ({
      name: s.name,
      upstreams: (s.upstreams ?? []).map((u) => u.service),
      protocol: s.protocol === 'tcp' ? ('tcp' as const) : ('http' as const),
    })),
    target,
    entry: from ?? INGRESS_PROXY,
  };
  return {
    topology,
    async read(): Promise<MeshCounters> {
      const texts = await readProxyMetrics(base);
      return { at: performance.now(), proxies: texts.map((t): ProxyCounters => proxyCounters(t.id, t.service, t.text)) };
    },
  };
}
