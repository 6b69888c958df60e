// The one place the X.509 library is set up: @peculiar/x509 over Node's WebCrypto, and
// the key shape every Trellis certificate uses (ECDSA P-256 with SHA-256, as Linkerd
// requires of its trust anchors and issuers). The control plane's CA and the proxy's
// workload identity both import it from here, so the library is configured once
// whichever side loads it first.
//
// tsyringe (the library's dependency injection) needs the Reflect metadata polyfill
// loaded before it; an ES module's imports run in order, so it comes first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

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

/** The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** Imports a PKCS#8 PEM P-256 private key; throws when it is no such key. */
export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return (await webcrypto.subtle.importKey('pkcs8', der, EC_P256, true, ['sign'])) as CryptoKey;
}

/** Every certificate in a PEM text, in order. */
export function certificatesOf(pem: string): x509.X509Certificate[] {
  return x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
}

/** A certificate's serial as colon-free lower-case hex (as `openssl x509 -serial` shows it, lower case). */
export function serialOf(cert: x509.X509Certificate): string {
  return cert.serialNumber.toLowerCase();
}

/** Whether `key` is the private key of `cert` (signs a random message and verifies it with the certificate's key). */
export async function keyMatchesCertificate(key: CryptoKey, cert: x509.X509Certificate): Promise<boolean> {
  try {
    const data = randomBytes(32);
    const sig = await webcrypto.subtle.sign(ECDSA_SHA256, key as webcrypto.CryptoKey, data);
    const pub = await cert.publicKey.export(webcrypto as unknown as Crypto);
    return await webcrypto.subtle.verify(ECDSA_SHA256, pub as webcrypto.CryptoKey, sig, data);
  } catch {
    return false;
  }
}

/**
 * A CSR over `keys` that asks for nothing (empty subject, no attributes): the CA names
 * the certificate after the proxy's bootstrap credential (src/control/ca/csr.ts).
 */
export async function makeCsr(keys: CryptoKeyPair): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_SHA256 });
  return csr.toString('pem');
}

/** A certificate as PEM with `\n` line ends and a final newline, so PEM texts concatenate into a valid bundle (Node's TLS takes them joined). */
export function pemOf(cert: x509.X509Certificate): string {
  return `${cert.toString('pem').replace(/\r\n/g, '\n').trimEnd()}\n`;
}
