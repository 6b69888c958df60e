// A workload's key and its certificate signing request, with Node's crypto alone: what a
// proxy needs to get its certificate. The X.509 library (src/security/x509.ts, with
// reflect-metadata and tsyringe) costs a process about 20 MB of resident memory at
// import, and a sidecar only ever builds one fixed shape of CSR, so the proxy's import
// graph stays without it (test/proxy/sidecar-import-graph.test.ts); the control plane's
// CA parses and checks what this writes with the library (src/control/ca/csr.ts).
import { KeyObject, sign, webcrypto } from 'node:crypto';

/** The algorithm of every key Trellis makes: ECDSA on P-256, signatures over SHA-256. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** The signing algorithm for certificates and CSRs made with an {@link EC_P256} key. */
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

/**
 * A new P-256 key pair. `extractable` lets the private key be exported as PKCS#8: the CA
 * writes its keys to its state folder, and a proxy hands its key to Node's TLS (which
 * takes PEM), in memory only.
 */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

/** The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, no final newline). */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  return pem(der, 'PRIVATE KEY');
}

/**
 * A PKCS#10 CSR over `keys` that asks for nothing (empty subject, no attributes), signed
 * ECDSA with SHA-256: the CA names the certificate after the proxy's bootstrap credential
 * (src/control/ca/csr.ts). RFC 2986 §4:
 *
 *   CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
 *   CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] }
 */
export async function makeCsr(keys: CryptoKeyPair): Promise<string> {
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey as webcrypto.CryptoKey));
  const info = der(0x30, Buffer.concat([VERSION_0, EMPTY_NAME, spki, NO_ATTRIBUTES]));
  // Node signs ECDSA in DER (the SEQUENCE { r, s } X.509 wants), unlike WebCrypto's r || s.
  const signature = sign('sha256', info, KeyObject.from(keys.privateKey as webcrypto.CryptoKey));
  const csr = der(0x30, Buffer.concat([info, ECDSA_WITH_SHA256, der(0x03, Buffer.concat([Buffer.of(0), signature]))]));
  return pem(csr, 'CERTIFICATE REQUEST');
}

const VERSION_0 = Buffer.from('020100', 'hex');
const EMPTY_NAME = Buffer.from('3000', 'hex');
/** `[0] IMPLICIT SET OF Attribute`, empty. */
const NO_ATTRIBUTES = Buffer.from('a000', 'hex');
/** AlgorithmIdentifier { ecdsa-with-SHA256 (1.2.840.10045.4.3.2) }, no parameters (RFC 5758 §3.2). */
const ECDSA_WITH_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');

/** A DER tag-length-value (definite length, short or long form). */
export function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let head: Buffer;
  if (n < 0x80) head = Buffer.of(tag, n);
  else if (n < 0x100) head = Buffer.of(tag, 0x81, n);
  else if (n < 0x10000) head = Buffer.of(tag, 0x82, n >> 8, n & 0xff);
  else throw new RangeError('DER value too long');
  return Buffer.concat([head, content]);
}

/** PEM with `\n` line ends, 64 base64 characters a line, no final newline (as @peculiar/x509 writes it). */
export function pem(der: Buffer, label: string): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----`;
}
