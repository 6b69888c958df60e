// Test helper: a hand-made PKI for the certificates a real CA never issues (expired, not
// yet valid, self-signed, another trust domain, another service's), built with the same
// X.509 library and key shape as the mesh CA (src/security/x509.ts).
import { ECDSA_SHA256, generateKeyPair, pemOf, privateKeyPem, serialOf, x509 } from '../../src/security/x509.js';
import type { IssuedCertificate } from '../../src/api/protocol.js';
import type { TlsMaterial } from '../../src/proxy/tls/workload-identity.js';

const DAY = 86_400_000;
let serial = 1;

/** A root that signs workload certificates directly. */
export interface TestRoot {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly pem: string;
}

export async function makeRoot(name = 'test root'): Promise<TestRoot> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 365 * DAY),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { cert, keys, pem: pemOf(cert) };
}

export interface LeafOptions {
  /** The URI SAN; absent: none. */
  spiffeId?: string;
  notBefore?: number;
  notAfter?: number;
  /** Absent: self-signed (a key that signs its own certificate). */
  root?: TestRoot;
  /** The roots the holder trusts. */
  trust: readonly TestRoot[];
}

/** A workload key and certificate as WorkloadIdentity takes them, and as TLS options. */
export async function makeLeaf(o: LeafOptions): Promise<{ key: string; certificate: IssuedCertificate; material: TlsMaterial }> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const notBefore = new Date(o.notBefore ?? now - 60_000);
  const notAfter = new Date(o.notAfter ?? now + DAY);
  const extensions = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
    ...(o.spiffeId !== undefined ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: o.spiffeId }], true)] : []),
  ];
  const sn = (serial++).toString(16).padStart(2, '0');
  const cert =
    o.root === undefined
      ? await x509.X509CertificateGenerator.createSelfSigned({
          serialNumber: sn,
          name: 'CN=self',
          notBefore,
          notAfter,
          keys,
          signingAlgorithm: ECDSA_SHA256,
          extensions,
        })
      : await x509.X509CertificateGenerator.create({
          serialNumber: sn,
          subject: 'CN=workload',
          issuer: o.root.cert.subject,
          notBefore,
          notAfter,
          signingKey: o.root.keys.privateKey,
          publicKey: keys.publicKey,
          signingAlgorithm: ECDSA_SHA256,
          extensions,
        });
  const key = await privateKeyPem(keys.privateKey);
  const trustBundle = o.trust.map((r) => r.pem);
  const certificate: IssuedCertificate = {
    spiffeId: o.spiffeId ?? '',
    chain: [pemOf(cert)],
    trustBundle,
    serial: serialOf(cert),
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
  };
  return { key, certificate, material: { key, cert: pemOf(cert), ca: trustBundle } };
}
