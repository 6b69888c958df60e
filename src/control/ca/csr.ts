// Checks a certificate signing request from a proxy before the CA signs anything. A
// CSR is hostile input like any other: it may be no PEM, no PKCS#10, huge, signed by
// another key than the one it carries, or ask for a name. Trellis CSRs ask for nothing:
// the name in the certificate comes from the proxy's bootstrap credential, never from
// the CSR (Linkerd checks that a CSR's name matches the token; asking for nothing leaves
// nothing to match), so a CSR with a subject, an extension or any attribute is refused.
import { x509 } from '../../security/x509.js';
import { readOwnCsr } from './leaf-der.js';

/** The largest CSR accepted, in characters: a P-256 CSR in PEM is about 400. */
export const MAX_CSR_CHARS = 8 * 1024;

/** A CSR that passed every check: the public key to certify (SubjectPublicKeyInfo, DER). */
export interface CheckedCsr {
  spki: Buffer;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/** Checks a PEM CSR; a string result says what is wrong with it. */
export async function checkCsr(pem: string): Promise<CheckedCsr | string> {
  if (pem.length > MAX_CSR_CHARS) return `the CSR is longer than ${MAX_CSR_CHARS} characters`;
  const blocks = [...pem.matchAll(PEM_BLOCK)].map((m) => m[1]);
  if (blocks.length !== 1 || blocks[0] !== 'CERTIFICATE REQUEST') return 'the CSR must be one PEM block of type CERTIFICATE REQUEST';
  // Trellis's own shape (every proxy's CSR) is read and verified without the library.
  const body = /-----BEGIN CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE REQUEST-----/.exec(pem)?.[1];
  const own = body === undefined ? undefined : readOwnCsr(Buffer.from(body, 'base64'));
  if (own !== undefined) return own.verified ? { spki: own.spki } : "the CSR's signature does not verify with the key it carries";
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    return 'the CSR is not a PKCS#10 certificate request';
  }
  let algorithm: Algorithm & { namedCurve?: string };
  try {
    algorithm = csr.publicKey.algorithm as Algorithm & { namedCurve?: string };
  } catch {
    return 'the CSR carries a public key of an unknown kind';
  }
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') return 'the CSR must carry an ECDSA P-256 public key';
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) return "the CSR's signature does not verify with the key it carries";
  if (csr.subject !== '') return 'a CSR must ask for nothing: its subject must be empty (the identity comes from the bootstrap credential)';
  if (csr.attributes.length > 0) return 'a CSR must ask for nothing: no attributes or extensions (the identity comes from the bootstrap credential)';
  return { spki: Buffer.from(csr.publicKey.rawData) };
}
