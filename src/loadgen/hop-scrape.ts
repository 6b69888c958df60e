// Reads the mesh for the bottleneck account (hop-metrics.ts): the call graph from the
// control plane's /v1/services, the proxies from /v1/proxies, and every proxy's
// /metrics, at the start and the end of each step of a sweep.
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
    throw new Error(`answered ${res.status}`);
  }
  return res.text();
}

/**
 * The probe of the mesh behind `control`, for load on `target` entering by `from`'s
 * sidecar (or the ingress gateway). Proxies are listed again at every reading, so a
 * restarted proxy (new admin port) is found; a proxy that does not answer is left out
 * of that reading.
 */
export async function openMeshProbe(control: string, target: string, from: string | undefined): Promise<MeshProbe> {
  const base = control.replace(/\/+$/, '');
  const { services } = (await fetchJson(`${base}/v1/services`)) as { services: ServiceEntry[] };
  const topology: HopTopology = {
    services: services.map((s) => ({
      name: s.name, upstreams: (s.upstreams ?? []).map((u) => u.service), protocol: s.protocol === 'tcp' ? 'tcp' as const : 'http' as const,
    })),
    target,
    entry: from ?? INGRESS_PROXY,
  };
  return {
    topology,
    async read(): Promise<MeshCounters> {
      const { proxies } = (await fetchJson(`${base}/v1/proxies`)) as { proxies: ProxyEntry[] };
      const read = await Promise.all(proxies.map(async (p): Promise<ProxyCounters | undefined> => {
        const url = p.admin ? adminUrl(p.admin) : undefined;
        if (!url) return undefined;
        try {
          return proxyCounters(p.id, p.service, await fetchText(url));
        } catch {
          return undefined;
        }
      }));
      return { at: performance.now(), proxies: read.filter((p): p is ProxyCounters => p !== undefined) };
    },
  };
}
