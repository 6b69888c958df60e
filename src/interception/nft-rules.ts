// The netfilter rules that make a pod's traffic pass through its sidecar, written once
// for every place that installs them: `trellis up --isolate` (src/runner/isolation/)
// today, a Kubernetes init container or CNI step later. Given the pod's plan, it writes
// one nftables table (`nft -f` text) for the pod's network namespace:
//
//   outbound  the app's connections to a service's virtual address and port are
//             redirected (nat output) to the sidecar's local listener for that upstream
//             (an HTTP ExternalService's, to its HTTP proxy listener, which goes by Host);
//   inbound   connections from outside the pod to an app port are redirected (nat
//             prerouting) to the sidecar's inbound listener for that port;
//   dns       (when asked) the app's DNS queries, UDP and TCP port 53 to any address, are
//             redirected (nat output) to the sidecar's DNS responder, which answers mesh
//             names itself and forwards the rest from its own uid (src/proxy/dns/);
//   bypass    nothing else leaves the pod unless the sidecar's uid sent it (filter
//             output), and nothing from outside reaches a port other than the sidecar's
//             (filter input): an app cannot skip its sidecar, and no one outside can
//             skip it to reach the app.
//
// The sidecar's own sockets are told apart by owner uid (`meta skuid`), as Istio's
// istio-iptables (`-m owner --uid-owner 1337`) and Linkerd's proxy-init (`--proxy-uid`) do:
// Node cannot set SO_MARK on a socket, so a mark is not an option without native code.
//
// Why per-destination REDIRECT rules and not one catch-all redirect to a single port:
// a catch-all (Istio's 15001) needs the proxy to ask the kernel where each connection was
// going (getsockopt SO_ORIGINAL_DST), which Node cannot do without a native addon. The
// control plane already knows every service's virtual address and port, and the sidecar
// already has a local listener per upstream that knows its destination, so one rule per
// (virtual address, port) sends each connection straight to the listener that serves it:
// no lookup per connection, no addon, and the cost is one nat rule evaluated on a
// connection's first packet (later packets take the conntrack entry). Traffic to any
// other address is refused: an app may reach only the upstreams its service declares.
import { isIPv4 } from 'node:net';

/** One upstream the app may call: the service's virtual address and port, and the sidecar's listener (on 127.0.0.1) for it. */
export interface OutboundRedirect {
  readonly service: string;
  readonly vip: string;
  readonly port: number;
  readonly listener: number;
}

/** One app port and the sidecar's inbound listener in front of it. */
export interface InboundRedirect {
  readonly appPort: number;
  readonly listener: number;
}

export interface PodInterception {
  /** The table's name (one per pod namespace; replacing it replaces every rule). */
  readonly table: string;
  /** The uid the sidecar runs as: its sockets are never redirected nor refused. */
  readonly sidecarUid: number;
  readonly outbound: readonly OutboundRedirect[];
  readonly inbound: readonly InboundRedirect[];
  /** Other sidecar ports reachable from outside the pod (its admin server: /ready, /metrics). */
  readonly openPorts: readonly number[];
  /**
   * Addresses whose connections reach the app ports directly, not redirected: the
   * control plane's health probes (as a kubelet's probes reach a pod's container).
   */
  readonly probeSources: readonly string[];
  /**
   * Addresses that may not reach the inbound listeners at all (only `openPorts`): the
   * host's, for a service that is not public, so that nothing on the host but its health
   * probes and the admin server reaches such a pod (the ingress calls public services only).
   */
  readonly inboundClosedTo?: readonly string[];
  /**
   * The sidecar's DNS responder port (on 127.0.0.1): every DNS query the app sends (UDP and
   * TCP port 53, whatever the resolver address) is redirected there. Absent: DNS is not
   * intercepted. Every address, not only resolv.conf's: an app may not reach another
   * resolver anyway (bypass), and the init step need not read the pod's resolv.conf.
   */
  readonly dnsRedirect?: number;
}

/** The nftables table for one pod, as `nft -f` input: deletes any earlier one of the same name first. */
export function podRuleset(p: PodInterception): string {
  check(p);
  const appPorts = p.inbound.map((i) => i.appPort);
  const sidecarPorts = [...new Set([...p.inbound.map((i) => i.listener), ...p.openPorts])];
  const lines = [
    // `add` then `delete` makes the replace idempotent: nft has no "delete if exists" before 1.0.
    `add table ip ${p.table}`,
    `delete table ip ${p.table}`,
    `table ip ${p.table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...(p.probeSources.length > 0 && appPorts.length > 0 ? [`    ip saddr ${set(p.probeSources)} tcp dport ${set(appPorts)} accept`] : []),
    ...p.inbound.map((i) => `    tcp dport ${i.appPort} redirect to :${i.listener}`),
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    `    meta skuid ${p.sidecarUid} accept`,
    // After the sidecar's accept: its own queries (the forwards) go to the real resolver.
    ...(p.dnsRedirect !== undefined ? [`    udp dport 53 redirect to :${p.dnsRedirect}`, `    tcp dport 53 redirect to :${p.dnsRedirect}`] : []),
    ...p.outbound.map((o) => `    ip daddr ${o.vip} tcp dport ${o.port} redirect to :${o.listener}`),
    '  }',
    '  chain filter_output {',
    '    type filter hook output priority filter; policy accept;',
    '    oifname "lo" accept',
    // A redirected connection is seen here with its first route (the pod's interface), not
    // lo: what the nat output chain redirected to a sidecar listener is let through by that.
    '    ct status dnat accept',
    `    meta skuid ${p.sidecarUid} accept`,
    '    ct state established,related accept',
    '    meta l4proto tcp reject with tcp reset',
    '    reject',
    '  }',
    '  chain filter_input {',
    '    type filter hook input priority filter; policy accept;',
    '    iifname "lo" accept',
    '    ct state established,related accept',
    ...((p.inboundClosedTo?.length ?? 0) > 0 && p.inbound.length > 0
      ? [`    ip saddr ${set(p.inboundClosedTo ?? [])} tcp dport ${set(p.inbound.map((i) => i.listener))} reject with tcp reset`]
      : []),
    ...(sidecarPorts.length > 0 ? [`    tcp dport ${set(sidecarPorts)} accept`] : []),
    ...(p.probeSources.length > 0 && appPorts.length > 0 ? [`    ip saddr ${set(p.probeSources)} tcp dport ${set(appPorts)} accept`] : []),
    '    meta l4proto icmp accept',
    '    meta l4proto tcp reject with tcp reset',
    '    reject',
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

const set = (items: readonly (string | number)[]): string => (items.length === 1 ? String(items[0]) : `{ ${items.join(', ')} }`);

/** Every value written into the ruleset is checked: nothing from a mesh file becomes rule text unchecked. */
function check(p: PodInterception): void {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(p.table)) throw new RangeError(`nftables table name "${p.table}" is not [a-z][a-z0-9_]{0,30}`);
  uid(p.sidecarUid);
  for (const o of p.outbound) {
    addr(o.vip);
    port(o.port);
    port(o.listener);
  }
  for (const i of p.inbound) {
    port(i.appPort);
    port(i.listener);
  }
  for (const n of p.openPorts) port(n);
  if (p.dnsRedirect !== undefined) port(p.dnsRedirect);
  for (const a of [...p.probeSources, ...(p.inboundClosedTo ?? [])]) addr(a);
  const listeners = new Set([
    ...p.inbound.map((i) => i.listener),
    ...p.openPorts,
    ...p.outbound.map((o) => o.listener),
    ...(p.dnsRedirect !== undefined ? [p.dnsRedirect] : []),
  ]);
  for (const i of p.inbound) {
    if (listeners.has(i.appPort)) throw new RangeError(`app port ${i.appPort} is also a sidecar listener port`);
  }
}

function port(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError(`port ${n} is not 1-65535`);
}

function uid(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 2 ** 31 - 1)
    throw new RangeError(`sidecar uid ${n} is not a positive integer (not root: root's sockets must stay intercepted)`);
}

function addr(a: string): void {
  if (!isIPv4(a)) throw new RangeError(`"${a}" is not an IPv4 address`);
}
