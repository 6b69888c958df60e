// What the admin views show of a snapshot: all of it but private keys. A gateway's
// snapshot carries the keys of its HTTPS listeners (from the Gateway's Secrets); the
// control plane's /v1/snapshots/<id> and a proxy's /config show the certificate and say
// a key is there, never the key (an admin-token holder reads config, not credentials).
import type { Snapshot } from './protocol.js';

/** What a private key is shown as. */
export const REDACTED_KEY = '[redacted]';

/** The snapshot with every gateway certificate's key replaced by {@link REDACTED_KEY}; the same object when it holds none. */
export function redactSnapshot<T extends Snapshot | undefined | null>(snapshot: T): T {
  const gateway = snapshot?.gateway;
  if (!gateway?.ports.some((p) => p.certificates?.length)) return snapshot;
  return {
    ...snapshot,
    gateway: {
      ...gateway,
      ports: gateway.ports.map((p) => (p.certificates ? { ...p, certificates: p.certificates.map((c) => ({ ...c, key: REDACTED_KEY })) } : p)),
    },
  };
}
