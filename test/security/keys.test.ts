// The proxy's key and CSR, made with Node's crypto alone (src/security/keys.ts), are what
// the X.509 library would make: the same signed bytes, a signature the library verifies,
// and a CSR the CA's checks accept.
import assert from 'node:assert/strict';
import { createPublicKey, webcrypto } from 'node:crypto';
import { test } from 'node:test';
import { checkCsr } from '../../src/control/ca/csr.js';
import { EC_P256, generateKeyPair, makeCsr, privateKeyPem } from '../../src/security/keys.js';
import { x509 } from '../../src/security/x509.js';

/** The first element of a DER SEQUENCE (a CSR's CertificationRequestInfo), with its header. */
function signedPart(raw: ArrayBuffer): Buffer {
  const b = Buffer.from(raw);
  const skip = (at: number): number => (b[at + 1]! < 0x80 ? at + 2 : at + 2 + (b[at + 1]! & 0x7f));
  const length = (at: number): number => (b[at + 1]! < 0x80 ? b[at + 1]! : b.readUIntBE(at + 2, b[at + 1]! & 0x7f));
  const inner = skip(0);
  return b.subarray(inner, skip(inner) + length(inner));
}

test("the CSR's signed part is byte for byte the library's, and its signature verifies", async () => {
  for (let i = 0; i < 20; i++) {
    const keys = await generateKeyPair();
    const ours = new x509.Pkcs10CertificateRequest(await makeCsr(keys));
    const theirs = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    assert.equal(signedPart(ours.rawData).length, 100); // SEQUENCE { version, empty name, a P-256 key, no attributes }
    assert.deepEqual(signedPart(ours.rawData), signedPart(theirs.rawData));
    assert.equal(ours.signatureAlgorithm.name, 'ECDSA');
    assert.equal(await ours.verify(), true);
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey as webcrypto.CryptoKey));
    assert.deepEqual(Buffer.from(ours.publicKey.rawData), spki);
  }
});

test('the CA accepts the CSR, and refuses it when a byte of it is changed', async () => {
  const keys = await generateKeyPair();
  const pem = await makeCsr(keys);
  assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n([A-Za-z0-9+/=]{64}\n)*[A-Za-z0-9+/=]{1,64}\n-----END CERTIFICATE REQUEST-----$/);
  const checked = await checkCsr(pem);
  assert.notEqual(typeof checked, 'string', String(checked));
  // A flipped bit in the public key: the signature no longer verifies.
  const der = x509.PemConverter.decodeFirst(pem);
  const bytes = Buffer.from(der);
  bytes[bytes.length - 80]! ^= 1;
  assert.equal(typeof (await checkCsr(x509.PemConverter.encode(bytes, 'CERTIFICATE REQUEST'))), 'string');
});

test('the private key PEM is what the library wrote, and Node reads it back as the same key', async () => {
  const keys = await generateKeyPair();
  const pem = await privateKeyPem(keys.privateKey);
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey);
  assert.equal(pem, x509.PemConverter.encode(der, 'PRIVATE KEY'));
  const pub = createPublicKey(pem).export({ type: 'spki', format: 'der' });
  assert.deepEqual(pub, Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey as webcrypto.CryptoKey)));
  assert.equal(EC_P256.namedCurve, 'P-256');
});
