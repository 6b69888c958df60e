// The mesh CA on a fake clock: what it issues (SPIFFE URI SAN, 24 h, a chain that ends at
// the trust bundle), where it keeps itself (0600, reused on restart), root rotation with
// an overlap period, the user's own CA files, and the bad CSR matrix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { webcrypto } from 'node:crypto';
import { CertificateAuthority } from '../../src/control/ca/certificate-authority.js';
import { checkCsr, MAX_CSR_CHARS } from '../../src/control/ca/csr.js';
import { ECDSA_SHA256, generateKeyPair, makeCsr, privateKeyPem, x509 } from '../../src/security/x509.js';
import type { IssuedCertificate } from '../../src/api/protocol.js';
import { tempDir } from './helpers.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2027-01-01T00:00:00Z');
const NAME = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'backend' };

function fakeClock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

async function issued(ca: CertificateAuthority, name = NAME): Promise<IssuedCertificate> {
  const r = await ca.issue(await makeCsr(await generateKeyPair()), name);
  assert.notEqual(typeof r, 'string', String(r));
  return r as IssuedCertificate;
}

/** Whether the chain verifies up to a root of `bundle` at time `at` (each signature and validity checked). */
async function verifiesAt(cert: IssuedCertificate, bundle: string[], at: number): Promise<boolean> {
  const chain = cert.chain.map((p) => new x509.X509Certificate(p));
  const roots = bundle.map((p) => new x509.X509Certificate(p));
  const built = await new x509.X509ChainBuilder({ certificates: [...chain.slice(1), ...roots] }).build(chain[0] as x509.X509Certificate);
  const top = built.at(-1) as x509.X509Certificate;
  if (!roots.some((r) => r.equal(top))) return false;
  for (let i = 0; i < built.length; i++) {
    const c = built[i] as x509.X509Certificate;
    const issuer = built[i + 1] ?? c;
    if (!(await c.verify({ publicKey: issuer.publicKey, date: new Date(at) }))) return false;
  }
  return true;
}

test('the CA issues a 24 h certificate naming the SPIFFE ID, whose chain ends at the trust bundle', async () => {
  const clock = fakeClock();
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: clock.now });
  const c = await issued(ca);
  assert.equal(c.spiffeId, 'spiffe://cluster.local/ns/default/sa/backend');
  const leaf = new x509.X509Certificate(c.chain[0] as string);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  assert.ok(san?.critical);
  assert.deepEqual(
    san?.names.items.map((n) => n.value),
    ['spiffe://cluster.local/ns/default/sa/backend'],
  );
  assert.equal(leaf.subject, '');
  assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  assert.equal(Date.parse(c.notAfter) - T0, 24 * HOUR);
  assert.equal(c.trustBundle.length, 1);
  assert.ok(await verifiesAt(c, c.trustBundle, T0));
  assert.ok(!(await verifiesAt(c, c.trustBundle, T0 + 25 * HOUR)), 'expired after its lifetime');
  assert.equal(c.serial, leaf.serialNumber.toLowerCase());
});

test('the certificate lifetime and trust domain come from the options', async () => {
  const ca = await CertificateAuthority.open({ trustDomain: 'shop.example', certificateLifetimeMs: HOUR, now: fakeClock().now });
  const c = await issued(ca, { ...NAME, trustDomain: 'shop.example' });
  assert.equal(c.spiffeId, 'spiffe://shop.example/ns/default/sa/backend');
  assert.equal(Date.parse(c.notAfter) - T0, HOUR);
});

test('a generated CA is kept with its keys 0600 in a 0700 folder and reused on restart', async () => {
  const tmp = await tempDir();
  try {
    const dir = path.join(tmp.dir, 'ca');
    const first = await CertificateAuthority.open({ trustDomain: 'cluster.local', dir, now: fakeClock().now });
    assert.equal((await stat(path.join(dir, 'ca.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.match(await readFile(path.join(dir, 'trust-bundle.pem'), 'utf8'), /BEGIN CERTIFICATE/);
    const c = await issued(first);
    const again = await CertificateAuthority.open({ trustDomain: 'cluster.local', dir, now: fakeClock().now });
    assert.deepEqual(again.trustBundle(), first.trustBundle(), 'the same root after a restart');
    assert.ok(await verifiesAt(c, again.trustBundle(), T0), 'certificates from before the restart still verify');
    assert.equal(again.view().issuer.serial, first.view().issuer.serial);
  } finally {
    await tmp.remove();
  }
});

test('a root rotation: the new root is trusted first, signs after the propagation delay, and the old leaves once its certificates expired', async () => {
  const clock = fakeClock();
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: clock.now, propagationMs: HOUR });
  const bundles: string[][] = [];
  ca.on('bundle', (b) => bundles.push(b));
  const before = await issued(ca);
  await ca.rotateRoot();
  assert.equal(ca.trustBundle().length, 2, 'old and new roots during the overlap');
  assert.equal(bundles.length, 1, 'proxies are told at once');
  // Within the propagation delay the old issuer still signs: peers may not know the new root yet.
  clock.advance(HOUR / 2);
  const during = await issued(ca);
  assert.equal(during.chain[1], before.chain[1]);
  clock.advance(HOUR);
  const after = await issued(ca);
  assert.notEqual(after.chain[1], before.chain[1], 'the new issuer signs');
  const overlap = ca.trustBundle();
  assert.ok(await verifiesAt(before, overlap, clock.now()), 'an old certificate verifies against the overlap bundle');
  assert.ok(await verifiesAt(after, overlap, clock.now()), 'a new certificate verifies against the overlap bundle');
  assert.ok(!(await verifiesAt(after, before.trustBundle, clock.now())), 'not against the old bundle alone');
  // Past every old certificate's expiry the old root leaves the bundle.
  clock.advance(25 * HOUR);
  await ca.maintain();
  assert.equal(ca.trustBundle().length, 1);
  assert.equal(bundles.length, 2);
  assert.ok(await verifiesAt(await issued(ca), ca.trustBundle(), clock.now()));
  assert.ok(!(await verifiesAt(during, ca.trustBundle(), clock.now())));
});

test('the issuer is replaced before it expires, and no certificate outlives it', async () => {
  const clock = fakeClock();
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: clock.now, issuerLifetimeMs: 30 * HOUR });
  const first = ca.view().issuer.serial;
  clock.advance(21 * HOUR); // 9 h left: under a third of 30 h
  const c = await issued(ca);
  assert.notEqual(ca.view().issuer.serial, first);
  assert.ok(Date.parse(c.notAfter) <= Date.parse(ca.view().issuer.notAfter));
});

test("the user's CA: an issuer under their root signs, the chain carries the issuer, the bundle their root", async () => {
  const tmp = await tempDir();
  try {
    const rootKeys = await generateKeyPair();
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=Shop Root',
      keys: rootKeys,
      signingAlgorithm: ECDSA_SHA256,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + 1000 * HOUR),
      extensions: [new x509.BasicConstraintsExtension(true, 1, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    const issuerKeys = await generateKeyPair();
    const issuer = await x509.X509CertificateGenerator.create({
      subject: 'CN=Shop Issuer',
      issuer: root.subject,
      publicKey: issuerKeys.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: ECDSA_SHA256,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + 500 * HOUR),
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    const certificate = await tmp.write('issuer.pem', issuer.toString('pem'));
    const key = await tmp.write('issuer.key', await privateKeyPem(issuerKeys.privateKey));
    const trustBundle = await tmp.write('roots.pem', root.toString('pem'));
    const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: fakeClock().now, files: { certificate, key, trustBundle } });
    assert.equal(ca.source, 'provided');
    const c = await issued(ca);
    assert.equal(c.chain.length, 2);
    assert.ok(await verifiesAt(c, c.trustBundle, T0));
    assert.equal(new x509.X509Certificate(c.trustBundle[0] as string).subject, 'CN=Shop Root');

    // A key that is not the issuer's, and an issuer whose root is not in the bundle, are refused with the reason.
    const otherKey = await tmp.write('other.key', await privateKeyPem((await generateKeyPair()).privateKey));
    await assert.rejects(
      CertificateAuthority.open({ trustDomain: 'cluster.local', now: fakeClock().now, files: { certificate, key: otherKey, trustBundle } }),
      {
        code: 'TRELLIS_E_CA_INVALID',
        message: /is not the key of the first certificate/,
      },
    );
    await assert.rejects(CertificateAuthority.open({ trustDomain: 'cluster.local', now: fakeClock().now, files: { certificate, key } }), {
      code: 'TRELLIS_E_CA_INVALID',
      message: /not a root/,
    });
    await writeFile(path.join(tmp.dir, 'garbage.pem'), 'not a certificate');
    await assert.rejects(
      CertificateAuthority.open({ trustDomain: 'cluster.local', now: fakeClock().now, files: { certificate: path.join(tmp.dir, 'garbage.pem'), key } }),
      {
        code: 'TRELLIS_E_CA_INVALID',
      },
    );
    // Expired: refused at start rather than issuing certificates nobody accepts (linkerd2 #3676).
    await assert.rejects(CertificateAuthority.open({ trustDomain: 'cluster.local', now: () => T0 + 600 * HOUR, files: { certificate, key, trustBundle } }), {
      code: 'TRELLIS_E_CA_INVALID',
      message: /expired/,
    });
  } finally {
    await tmp.remove();
  }
});

test('bad CSRs are refused with a reason, never signed and never thrown', async () => {
  const keys = await generateKeyPair();
  const good = await makeCsr(keys);
  // Another key's signature over the same request body: the signature does not verify.
  const other = await makeCsr(await generateKeyPair());
  const der = x509.PemConverter.decodeFirst(good);
  const otherDer = new Uint8Array(x509.PemConverter.decodeFirst(other));
  const tampered = new Uint8Array(der.byteLength);
  tampered.set(new Uint8Array(der));
  // The signature is the DER's tail; flip a byte in it.
  tampered[tampered.length - 5] = ((tampered[tampered.length - 5] as number) ^ 0xff) & 0xff;
  const named = (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=postgres', keys, signingAlgorithm: ECDSA_SHA256 })).toString('pem');
  const withSan = (
    await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://cluster.local/ns/default/sa/postgres' }])],
    })
  ).toString('pem');
  const p384 = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const wrongCurve = (await x509.Pkcs10CertificateRequestGenerator.create({ keys: p384, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } })).toString(
    'pem',
  );
  const cases: [string, string, RegExp][] = [
    ['empty', '', /one PEM block/],
    ['not PEM', 'hello', /one PEM block/],
    ['a certificate, not a CSR', good.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), /CERTIFICATE REQUEST/],
    ['two CSRs', good + other, /one PEM block/],
    ['garbage in a PEM block', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', /not a PKCS#10/],
    ['oversize', `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(MAX_CSR_CHARS)}\n-----END CERTIFICATE REQUEST-----\n`, /longer than/],
    ['a signature that does not verify', x509.PemConverter.encode(tampered.buffer, 'CERTIFICATE REQUEST'), /does not verify|not a PKCS#10/],
    ['asks for a subject', named, /ask for nothing/],
    ['asks for a SAN', withSan, /ask for nothing/],
    ['a P-384 key', wrongCurve, /P-256/],
  ];
  assert.ok(otherDer.length > 0);
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: fakeClock().now });
  for (const [what, csr, reason] of cases) {
    const checked = await checkCsr(csr);
    assert.equal(typeof checked, 'string', what);
    assert.match(checked as string, reason, what);
    assert.match((await ca.issue(csr, NAME)) as string, reason, what);
  }
  assert.notEqual(typeof (await checkCsr(good)), 'string');
});
