// The one place the X.509 library is set up: @peculiar/x509 over Node's WebCrypto, and
// the key shape every Trellis certificate uses (ECDSA P-256 with SHA-256, as Linkerd
// requires of its trust anchors and issuers). The control plane's CA and the CLI import
// it from here, so the library is configured once whichever loads it first; a proxy
// does not load it at all (src/security/keys.ts makes its key and CSR).
//
// tsyringe (the library's dependency injection) needs the Reflect metadata polyfill
// loaded before it; an ES module's imports run in order, so it comes first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { EC_P256, ECDSA_SHA256 } from './keys.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

// The key and CSR of a workload are made without the library (src/security/keys.ts), so
// a proxy does not load it; they are here too for the CA and the tools.
export { EC_P256, ECDSA_SHA256, generateKeyPair, makeCsr, privateKeyPem } from './keys.js';

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

/** A certificate as PEM with `\n` line ends and a final newline, so PEM texts concatenate into a valid bundle (Node's TLS takes them joined). */
export function pemOf(cert: x509.X509Certificate): string {
  return `${cert.toString('pem').replace(/\r\n/g, '\n').trimEnd()}\n`;
}
