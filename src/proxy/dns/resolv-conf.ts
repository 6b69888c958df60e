// The name servers the DNS responder forwards to, read from the pod's /etc/resolv.conf
// (the kubelet writes the cluster DNS service's address there; the init step's rules
// redirect the app's queries to those addresses to the responder, and let the sidecar's
// own through, so forwarding to them reaches the real resolver).
import { isIP } from 'node:net';
import type { HostPort } from '../../api/protocol.js';

/** At most this many, as glibc's MAXNS: later lines are not read by a libc either. */
const MAX_NAMESERVERS = 3;

/** The `nameserver` lines of a resolv.conf, as addresses on port 53 (lines that are not an IP address are skipped). */
export function nameservers(text: string): HostPort[] {
  const out: HostPort[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m === null) continue;
    // A scoped IPv6 address (fe80::1%eth0) is not supported by the forwarder: skipped.
    const host = m[1] as string;
    if (host.includes('%') || isIP(host) === 0) continue;
    out.push({ host, port: 53 });
    if (out.length === MAX_NAMESERVERS) break;
  }
  return out;
}
