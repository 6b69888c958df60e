// Whether a peer is on this machine: what the admin servers of the control plane and the
// proxies show only to local callers (a proxy's /config, /tap, /explain; the control
// plane's trace receiver, which the apps `trellis up` starts export to without a
// credential). Imported by both sides.
import { isIP } from 'node:net';

/** Whether a socket's remote address is this machine's loopback (IPv4 127/8, ::1, or IPv4-mapped 127/8). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return address === '::1';
}
