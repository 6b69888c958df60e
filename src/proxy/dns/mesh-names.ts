// What the DNS responder answers for, from the snapshot in force: every mesh service's
// host names as Kubernetes DNS resolves them for a client in the proxy's namespace
// (src/api/names.ts: `svc` in its own namespace, `svc.ns`, `svc.ns.svc`,
// `svc.ns.svc.<cluster domain>`), and the ports the sidecar opens for each one.
// ExternalServices are left out: their names are real DNS names, forwarded as any other.
import type { Snapshot, UpstreamSnapshot } from '../../api/protocol.js';
import { DEFAULT_CLUSTER_DOMAIN, DEFAULT_NAMESPACE, serviceHostNames, splitServiceKey } from '../../api/names.js';

/** A one-port service's ports are not in its snapshot: port 80 (a Service's usual port) and its endpoints' app ports, at most this many. */
const MAX_GUESSED_PORTS = 8;

/** Every host name (lower case) of the snapshot's mesh services, to the service's key. */
export function meshNames(s: Snapshot): Map<string, string> {
  const caller = typeof s.namespace === 'string' ? s.namespace : DEFAULT_NAMESPACE;
  const domain = typeof s.clusterDomain === 'string' ? s.clusterDomain : DEFAULT_CLUSTER_DOMAIN;
  const index = new Map<string, string>();
  for (const [key, u] of Object.entries(s.upstreams)) {
    if (typeof u !== 'object' || u === null || Array.isArray(u.externalHosts)) continue;
    const { name, namespace } = splitServiceKey(key);
    for (const host of serviceHostNames(name, namespace, caller, domain)) index.set(host.toLowerCase(), key);
  }
  return index;
}

/**
 * The ports a client may dial a service's name on: a multi-port service's own ports; a
 * one-port service's are not in the snapshot (any port in Host reaches it), so 80 and the
 * ports its instances' apps listen on (Kubernetes: a Service whose port is its targetPort).
 */
export function meshPorts(u: UpstreamSnapshot): number[] {
  if (Array.isArray(u.ports) && u.ports.length > 0) return [...new Set(u.ports.map((p) => p.port))].filter(validPort);
  const ports = new Set<number>([80]);
  for (const b of Object.values(u.backends ?? {})) {
    for (const e of b.endpoints ?? []) {
      const p = e.app?.port;
      if (p !== undefined && validPort(p)) ports.add(p);
      if (ports.size >= MAX_GUESSED_PORTS) return [...ports];
    }
  }
  return [...ports];
}

const validPort = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535;
