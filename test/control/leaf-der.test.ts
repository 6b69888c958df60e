// The CA's template path (src/control/ca/leaf-der.ts) against the X.509 library it
// replaces on the hot path: the same TBSCertificate bytes for the same fields, a
// signature that verifies, and a CSR reader that takes Trellis's own shape only.
import assert from 'node:assert/strict';
import { createHash, KeyObject, X509Certificate, type webcrypto } from 'node:crypto';
import { test } from 'node:test';
import { checkCsr } from '../../src/control/ca/csr.js';
import { leafTbs, readOwnCsr, signLeaf } from '../../src/control/ca/leaf-der.js';
import { ECDSA_SHA256, generateKeyPair, makeCsr, pemOf, x509 } from '../../src/security/x509.js';

/** An issuer as the CA makes one: a CA certificate with a subject key identifier. */
async function issuer(name = 'CN=Trellis issuer,O=Trellis'): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name,
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2036-01-01T00:00:00Z'),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false)],
  });
  return { cert, keys };
}

/** The DER of the TBSCertificate inside a certificate (its first element). */
function tbsOf(der: Buffer): Buffer {
  // Outer SEQUENCE with a 2-byte long length (82 xx xx), then the TBS SEQUENCE (82 xx xx).
  assert.equal(der[0], 0x30);
  const at = der[1] === 0x82 ? 4 : der[1] === 0x81 ? 3 : 2;
  assert.equal(der[at], 0x30);
  const len = der[at + 1] === 0x82 ? der.readUInt16BE(at + 2) + 4 : der[at + 1] === 0x81 ? (der[at + 2] as number) + 3 : (der[at + 1] as number) + 2;
  return der.subarray(at, at + len);
}

for (const [label, notAfter] of [
  ['UTCTime', '2027-01-02T00:00:00Z'],
  ['GeneralizedTime after 2049', '2050-06-01T12:34:56Z'],
] as const) {
  test(`the template's TBSCertificate is byte for byte the library's (${label})`, async () => {
    const { cert, keys } = await issuer();
    const subject = await generateKeyPair();
    const fields = {
      serial: Buffer.from('5a0e4c1d2b3a49586776859493a2b1c0', 'hex'),
      notBefore: new Date('2027-01-01T00:00:00Z'),
      notAfter: new Date(notAfter),
      spiffeId: 'spiffe://cluster.local/ns/default/sa/backend',
    };
    const library = await x509.X509CertificateGenerator.create({
      serialNumber: fields.serial.toString('hex'),
      subject: '',
      issuer: cert.subjectName,
      notBefore: fields.notBefore,
      notAfter: fields.notAfter,
      publicKey: subject.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: fields.spiffeId }], true),
        await x509.AuthorityKeyIdentifierExtension.create(cert, false),
        await x509.SubjectKeyIdentifierExtension.create(subject.publicKey, false),
      ],
    });
    const leafIssuer = {
      name: Buffer.from(cert.subjectName.toArrayBuffer()),
      authorityKeyId: Buffer.from((await x509.AuthorityKeyIdentifierExtension.create(cert, false)).rawData),
      key: KeyObject.from(keys.privateKey as webcrypto.CryptoKey),
    };
    const spki = Buffer.from(await crypto.subtle.exportKey('spki', subject.publicKey));
    const ours = { ...fields, spki };
    assert.equal(leafTbs(leafIssuer, ours).toString('hex'), tbsOf(Buffer.from(library.rawData)).toString('hex'));

    // Signed: Node and the library both read it, the issuer's key verifies it.
    const der = signLeaf(leafIssuer, ours);
    const node = new X509Certificate(der);
    assert.ok(node.verify(new X509Certificate(pemOf(cert)).publicKey));
    assert.ok(node.checkIssued(new X509Certificate(pemOf(cert))));
    assert.equal(node.subjectAltName, `URI:${fields.spiffeId}`);
    assert.equal(node.serialNumber.toLowerCase(), fields.serial.toString('hex'));
    assert.equal(new Date(node.validTo).toISOString(), fields.notAfter.toISOString());
    const parsed = new x509.X509Certificate(node.toString());
    assert.ok(await parsed.verify({ publicKey: cert.publicKey, date: new Date('2027-01-01T12:00:00Z') }));
  });
}

test('a Trellis CSR is read without the library: its key, and a signature that verifies only untouched', async () => {
  const keys = await generateKeyPair();
  const pem = await makeCsr(keys);
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  const own = readOwnCsr(der);
  assert.ok(own?.verified);
  assert.deepEqual(own.spki, Buffer.from(await crypto.subtle.exportKey('spki', keys.publicKey)));
  const checked = await checkCsr(pem);
  assert.ok(typeof checked !== 'string');
  assert.equal(createHash('sha256').update(checked.spki).digest('hex'), createHash('sha256').update(own.spki).digest('hex'));

  // One bit of the signature flipped: the shape holds, the signature does not.
  const bad = Buffer.from(der);
  bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
  assert.equal(readOwnCsr(bad)?.verified, false);
  // Truncated, trailing bytes, garbage: not this shape (the library path names what is wrong).
  assert.equal(readOwnCsr(der.subarray(0, der.length - 1)), undefined);
  assert.equal(readOwnCsr(Buffer.concat([der, Buffer.of(0)])), undefined);
  assert.equal(readOwnCsr(Buffer.alloc(0)), undefined);
  assert.equal(readOwnCsr(Buffer.from('3084ffffffff', 'hex')), undefined);
  for (let i = 0; i < 200; i++) {
    const noise = Buffer.from(der);
    noise[Math.floor(Math.random() * noise.length)] = Math.floor(Math.random() * 256);
    const r = readOwnCsr(noise); // never throws; a changed byte is another shape or a bad signature
    if (r !== undefined && !noise.equals(der)) assert.equal(r.verified, false);
  }
});

test('a CSR of another shape (a subject) is left to the library, which refuses it by name', async () => {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=postgres', keys, signingAlgorithm: ECDSA_SHA256 });
  const der = Buffer.from(csr.rawData);
  assert.equal(readOwnCsr(der), undefined);
  assert.match(String(await checkCsr(csr.toString('pem'))), /subject must be empty/);
});
