// What each pod of an isolated mesh is given: its ports (the same in every pod, as in
// Kubernetes, since each has its own network namespace), its hosts file (every service's
// name, and every ExternalService's hosts → its virtual address) and its interception
// rules (src/interception/nft-rules.ts).
import { splitServiceKey } from '../../api/names.js';
import { podRuleset } from '../../interception/nft-rules.js';

/** The sidecar's ports inside every pod (Istio's numbers where it has one: admin 15000, inbound 15006). */
export const POD_PORTS = {
  admin: 15000,
  httpProxy: 15001,
  /** The first inbound listener; a multi-port service's next ones follow. */
  inbound: 15006,
  /** The first upstream listener (on 127.0.0.1); one per upstream, counting up. */
  upstream: 15100,
} as const;

/** Ports the sidecar takes in a pod: an app may not listen on these. */
export const SIDECAR_PORT_RANGE = { from: 15000, to: 15999 } as const;

/** The uid and gid sidecars run as (Istio's 1337): their sockets are not intercepted. */
export const DEFAULT_SIDECAR_UID = 1337;

/** A service's names in the hosts file: `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local` (as cluster DNS answers). */
export function hostNames(serviceKey: string, namespace: string): string[] {
  const { name, namespace: ns } = splitServiceKey(serviceKey);
  const full = [`${name}.${ns}`, `${name}.${ns}.svc`, `${name}.${ns}.svc.cluster.local`];
  return ns === namespace ? [name, ...full] : full;
}

const HOST_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

/**
 * The hosts file of a pod in `namespace`: localhost, then every service by its virtual
 * address, then every ExternalService's hosts by its own (`externals`: virtual address →
 * hosts, which the config checks as DNS names without wildcards).
 */
export function hostsFile(vips: ReadonlyMap<string, string>, namespace: string, externals: ReadonlyMap<string, readonly string[]> = new Map()): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const [key, vip] of vips) lines.push(`${vip}\t${hostNames(key, namespace).join(' ')}`);
  for (const [vip, hosts] of externals) {
    // Checked again here: a hosts file line is split on blanks, so nothing but a DNS name goes in.
    const names = hosts.filter((h) => HOST_NAME.test(h));
    if (names.length > 0) lines.push(`${vip}\t${names.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface PodRulesInput {
  readonly podKey: string;
  readonly sidecarUid: number;
  readonly inbound: readonly { appPort: number; listener: number }[];
  readonly upstreams: readonly { service: string; vip: string; port: number; listener: number }[];
  readonly probeSource: string;
  /** The host's address on the bridge, when the service is not public: the host may not reach its inbound listeners. */
  readonly closedTo?: string;
}

/** The pod's nftables table (one name for every pod: each has its own namespace). */
export function podRules(p: PodRulesInput): string {
  return podRuleset({
    table: 'trellis',
    sidecarUid: p.sidecarUid,
    inbound: p.inbound,
    outbound: p.upstreams,
    openPorts: [POD_PORTS.admin],
    probeSources: [p.probeSource],
    inboundClosedTo: p.closedTo === undefined ? [] : [p.closedTo],
  });
}
