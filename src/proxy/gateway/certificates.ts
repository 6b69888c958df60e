// A Gateway port's certificates, and which one a TLS client gets. The Gateway API ties
// certificates to listeners by the listener's hostname and asks for the longest match of
// the client's SNI (GatewayTLSConfig); several certificates on one listener are
// implementation-specific, and here the one whose names cover the SNI wins, else the
// listener's first. A client whose SNI no listener of the port takes is refused in the
// handshake (as Envoy does when no filter chain matches), never given some other name's
// certificate.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { GatewayCertificate } from '../../api/protocol.js';

/** One certificate ready for handshakes: the listener hostname it is for, and its context. */
export interface ServingCertificate {
  readonly name: string;
  readonly hostname: string | undefined;
  readonly context: tls.SecureContext;
  readonly leaf: X509Certificate;
  /** The PEMs it was made from: a server's default context (clients without SNI) is set from them. */
  readonly chain: string;
  readonly key: string;
}

/**
 * Builds the contexts of a port's certificates; throws (the snapshot is refused) when a
 * certificate or key can't be used, naming it, so the last good ones stay in force.
 */
export function servingCertificates(certs: readonly GatewayCertificate[]): ServingCertificate[] {
  return certs.map((c) => {
    try {
      const context = tls.createSecureContext({ cert: c.chain, key: c.key, minVersion: 'TLSv1.2' });
      return { name: c.name, hostname: c.hostname?.toLowerCase(), context, leaf: new X509Certificate(c.chain), chain: c.chain, key: c.key };
    } catch (err) {
      throw new Error(`certificate ${c.name} can't be used: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}

/** Whether a listener hostname (`*.example.com` or exact; undefined: any) takes `host` (Gateway API: a wildcard stands for one or more labels). */
export function hostnameTakes(hostname: string | undefined, host: string): boolean {
  if (hostname === undefined) return true;
  if (hostname.startsWith('*.')) return host.length > hostname.length - 1 && host.endsWith(hostname.slice(1));
  return hostname === host;
}

/** How specific a listener hostname is: exact names first, then longer wildcards, then none. */
function specificity(hostname: string | undefined): number {
  if (hostname === undefined) return 0;
  return (hostname.startsWith('*.') ? 1_000 : 1_000_000) + hostname.length;
}

/** The certificate for a client that sent `servername` (SNI); undefined: no listener of the port takes it. */
export function certificateFor(certs: readonly ServingCertificate[], servername: string): ServingCertificate | undefined {
  const sni = servername.toLowerCase().replace(/\.$/, '');
  let best: number | undefined;
  for (const c of certs) {
    if (!hostnameTakes(c.hostname, sni)) continue;
    const s = specificity(c.hostname);
    if (best === undefined || s > best) best = s;
  }
  if (best === undefined) return undefined;
  let first: ServingCertificate | undefined;
  for (const c of certs) {
    if (specificity(c.hostname) !== best || !hostnameTakes(c.hostname, sni)) continue;
    if (c.leaf.checkHost(sni) !== undefined) return c;
    first ??= c;
  }
  return first;
}

/** The certificate for a client that sent no SNI (an IP address in the URL): a listener without a hostname's first. */
export function defaultCertificate(certs: readonly ServingCertificate[]): ServingCertificate | undefined {
  return certs.find((c) => c.hostname === undefined);
}
