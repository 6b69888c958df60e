// The verified workload at the other end of an inbound connection, read once per
// connection (an HTTP/1.1 connection, an HTTP/2 session) from its TLS socket. Only a
// socket whose chain the listener verified (`authorized`) names a peer: the inbound door
// (listeners/mtls-inbound.ts) has already refused every other TLS client, and a
// plaintext socket names none.
import { serviceKey } from '../../api/names.js';
import { parseSpiffeId } from '../../security/spiffe.js';
import type { PeerIdentity } from '../stack/exchange.js';
import { peerVerifiedOn, spiffeUriOf } from './mesh-tls.js';

interface MaybeTls {
  readonly authorized?: boolean;
  getPeerCertificate?: () => { subjectaltname?: string } | undefined;
}

/** The peer of `socket` (a TLS socket, or HTTP/2's proxy of one); undefined for plaintext. */
export function connectionPeer(socket: object): PeerIdentity | undefined {
  const s = socket as MaybeTls;
  if (typeof s.getPeerCertificate !== 'function' || s.authorized !== true) return undefined;
  // Verified at the door (the inbound listener): its answer, not a second parse of the
  // certificate. HTTP/2's session socket is a proxy of the TLS socket, not the same
  // object, so it reads the certificate once per session.
  const known = peerVerifiedOn(socket);
  const id = known?.spiffeId ?? spiffeUriOf(s.getPeerCertificate());
  const name = known?.name ?? (id === undefined ? undefined : parseSpiffeId(id));
  if (name === undefined || id === undefined) return undefined;
  return { name, spiffeId: id, serviceKey: serviceKey(name.serviceAccount, name.namespace) };
}
