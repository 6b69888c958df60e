// Why an mTLS handshake was refused, as a bounded set: the `reason` label of
// trellis_tls_handshake_failures_total and the word in the log line. OpenSSL's and
// Node's error codes are many; a metric label must not be whatever an error says.

export type HandshakeFailure =
  /** A plaintext client at a STRICT listener. */
  | 'plaintext'
  | 'expired'
  | 'not-yet-valid'
  /** The chain does not end at a root of the trust bundle: self-signed, another CA, a root removed after a rotation. */
  | 'untrusted'
  /** A SPIFFE ID of another trust domain. */
  | 'wrong-trust-domain'
  /** A server whose certificate names another workload than the one the caller meant to reach, or no SPIFFE ID at all. */
  | 'wrong-identity'
  /** A client that presented no certificate. */
  | 'no-certificate'
  /** This proxy has no certificate yet (its first CSR is not answered). */
  | 'no-identity'
  /** Anything else: a broken handshake, a peer that closed, a timeout. */
  | 'protocol';

/** An Error whose `code` is one of ours, for checkServerIdentity's refusals. */
export class IdentityMismatch extends Error {
  readonly code: 'TRELLIS_WRONG_IDENTITY' | 'TRELLIS_WRONG_TRUST_DOMAIN';
  constructor(code: IdentityMismatch['code'], message: string) {
    super(message);
    this.code = code;
  }
}

const BY_CODE: Readonly<Record<string, HandshakeFailure>> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted',
  CERT_SIGNATURE_FAILURE: 'untrusted',
  CERT_UNTRUSTED: 'untrusted',
  CERT_REJECTED: 'untrusted',
  TRELLIS_WRONG_IDENTITY: 'wrong-identity',
  TRELLIS_WRONG_TRUST_DOMAIN: 'wrong-trust-domain',
  ERR_TLS_CERT_ALTNAME_INVALID: 'wrong-identity',
  ERR_SSL_WRONG_VERSION_NUMBER: 'plaintext',
  ERR_SSL_HTTP_REQUEST: 'plaintext',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'expired',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no-certificate',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no-certificate',
};

/** The reason of an error (or verify error code) from a handshake. */
export function handshakeFailure(err: unknown): HandshakeFailure {
  const code = typeof err === 'string' ? err : (err as { code?: unknown } | undefined)?.code;
  return (typeof code === 'string' && BY_CODE[code]) || 'protocol';
}

/** A short, safe description of a handshake error: its code, never a certificate or key. */
export function handshakeDetail(err: unknown): string {
  if (typeof err === 'string') return err;
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message.split('\n')[0]!.slice(0, 200) : 'unknown error';
  return code !== undefined ? `${code}: ${message}` : message;
}
