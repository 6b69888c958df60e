// Opaque bytes to an ExternalService through the egress gateway. A TCP, TLS or HTTPS
// call has no Host header, so the caller's sidecar names the ExternalService in the SNI
// of its mutual-TLS connection to the gateway, as Istio does (`outbound_.<port>_._.<key>`,
// Envoy's AUTO_PASSTHROUGH cluster name), and the gateway reads it back here. Under
// REGISTRY_ONLY, a TLS client's own hello must name one of the ExternalService's hosts.

const TUNNEL_SNI = /^outbound_\.(\d{1,5})_\._\.([a-z0-9][a-z0-9.-]{0,252})$/;

/** The ExternalService key an egress gateway's SNI names; undefined when it is not in that form. */
export function externalOfTunnelSni(sni: string): string | undefined {
  const m = TUNNEL_SNI.exec(sni);
  return m === null ? undefined : m[2];
}

/** Whether a TLS client's SNI (undefined: it sent none) is one of `hosts` (lower case); names compare case-insensitively. */
export function sniAllowed(sni: string | undefined, hosts: readonly unknown[]): boolean {
  if (sni === undefined) return false;
  const lower = sni.toLowerCase();
  return hosts.some((h) => h === lower);
}
