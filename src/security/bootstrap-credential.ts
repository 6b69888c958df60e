// Per-instance bootstrap credentials: what a proxy shows the control plane in its hello
// to prove which instance it is, before it is given a snapshot or a certificate. Locally
// the runner plays the part Kubernetes' service account tokens play for Linkerd and
// Istio: it holds the mesh's bootstrap secret (made per run, given only to the control
// plane), derives each instance's credential from it and puts that in the instance's
// sidecar environment alone. A credential is an HMAC of the proxy's kind, service and
// id, so it names one instance: a process that reads one sidecar's environment can act
// as that instance and no other, and the control plane keeps no table of them (it
// recomputes, so its restarts lose nothing).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The environment variable the runner puts the credential in (never a flag: `ps` shows flags). */
export const CREDENTIAL_ENV = 'TRELLIS_CREDENTIAL';
/** The environment variable the control plane reads its bootstrap secret from. */
export const BOOTSTRAP_SECRET_ENV = 'TRELLIS_BOOTSTRAP_SECRET';

const PREFIX = 'tbc1.';

/** Who a credential is for: the fields of a hello it binds. */
export interface CredentialSubject {
  kind: 'sidecar' | 'gateway';
  service: string;
  id: string;
}

/** A new random bootstrap secret (32 bytes, base64url). */
export function newBootstrapSecret(): string {
  return randomBytes(32).toString('base64url');
}

function mac(secret: string, s: CredentialSubject): Buffer {
  // Newlines cannot occur in the fields (the hello's checks allow printable ASCII only), so
  // the joined text names one subject.
  return createHmac('sha256', secret).update(`trellis bootstrap credential v1\n${s.kind}\n${s.service}\n${s.id}`).digest();
}

/** The credential of one instance. */
export function mintCredential(secret: string, subject: CredentialSubject): string {
  return `${PREFIX}${mac(secret, subject).toString('base64url')}`;
}

/** Whether `credential` is the one of `subject` (compared in constant time). */
export function verifyCredential(secret: string, subject: CredentialSubject, credential: string): boolean {
  if (!credential.startsWith(PREFIX)) return false;
  const given = Buffer.from(credential.slice(PREFIX.length), 'base64url');
  const expected = mac(secret, subject);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The headers a proxy sends its credential in with every span export (src/proxy/sidecar.ts). */
export const CREDENTIAL_HEADERS = {
  kind: 'trellis-proxy-kind',
  service: 'trellis-proxy-service',
  id: 'trellis-proxy-id',
  credential: 'trellis-credential',
} as const;

/** The headers that carry `subject`'s `credential` (what a proxy sends the control plane's HTTP endpoints). */
export function credentialHeaders(subject: CredentialSubject, credential: string): Record<string, string> {
  return {
    [CREDENTIAL_HEADERS.kind]: subject.kind,
    [CREDENTIAL_HEADERS.service]: subject.service,
    [CREDENTIAL_HEADERS.id]: subject.id,
    [CREDENTIAL_HEADERS.credential]: credential,
  };
}

/**
 * Whether request `headers` carry a valid proxy credential: the instance they name (kind,
 * service, id) and the credential of that instance. A missing or repeated header, an
 * unknown kind or a wrong credential: false.
 */
export function headersCarryCredential(secret: string, headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  const one = (name: string): string | undefined => {
    const v = headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const kind = one(CREDENTIAL_HEADERS.kind);
  const service = one(CREDENTIAL_HEADERS.service);
  const id = one(CREDENTIAL_HEADERS.id);
  const credential = one(CREDENTIAL_HEADERS.credential);
  if ((kind !== 'sidecar' && kind !== 'gateway') || service === undefined || id === undefined || credential === undefined) return false;
  return verifyCredential(secret, { kind, service, id }, credential);
}
