// Certificates for a gateway's HTTPS listeners on one machine: a small local CA, kept in
// the state folder apart from the mesh CA (a root a user adds to `curl --cacert` or a
// browser must vouch for nothing inside the mesh), and server certificates it signs;
// and the checks a certificate file passes before a Gateway may serve it. Both sides
// use it: the runner makes the files, the config loader checks them.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ECDSA_SHA256, generateKeyPair, importPrivateKeyPem, pemOf, privateKeyPem, x509 } from './x509.js';

/** A certificate (then its issuers) and its key, PEM. */
export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

const DAY_MS = 86_400_000;
/** Backdated as the mesh CA does, for clocks a little behind. */
const BACKDATE_MS = 5 * 60_000;

const serial = (): string =>
  randomBytes(16)
    .toString('hex')
    .replace(/^[89a-f]/, '7');

/** A self-signed CA for local HTTPS (10 years, as the mesh CA's root). */
export async function makeLocalCa(name: string, now = Date.now()): Promise<PemPair> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}, O=Trellis local`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + 3650 * DAY_MS),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
    ],
  });
  return { cert: pemOf(cert), key: await privateKeyPem(keys.privateKey) };
}

export interface ServerCertificateSpec {
  readonly dnsNames: readonly string[];
  readonly ips?: readonly string[];
  readonly notBefore?: number;
  readonly notAfter?: number;
}

/** A server certificate signed by `ca` for the names in `spec` (default: 90 days from now, as ACME issues). */
export async function issueServerCertificate(ca: PemPair, spec: ServerCertificateSpec, now = Date.now()): Promise<PemPair> {
  const issuer = { cert: new x509.X509Certificate(ca.cert), key: await importPrivateKeyPem(ca.key) };
  const signed = await signServerCertificate(issuer, {
    dnsNames: spec.dnsNames,
    ...(spec.ips !== undefined ? { ips: spec.ips } : {}),
    notBefore: new Date(spec.notBefore ?? now - BACKDATE_MS),
    notAfter: new Date(spec.notAfter ?? now + 90 * DAY_MS),
  });
  return { cert: pemOf(signed.cert), key: signed.key };
}

/**
 * A TLS server certificate (serverAuth, the names as SANs, CN the first) over a key made
 * here, signed by `issuer`: the one shape of every serving certificate Trellis makes
 * (the local HTTPS certificate above, the injection webhook's from the mesh CA).
 */
export async function signServerCertificate(
  issuer: { readonly cert: x509.X509Certificate; readonly key: CryptoKey },
  spec: { readonly dnsNames: readonly string[]; readonly ips?: readonly string[]; readonly notBefore: Date; readonly notAfter: Date },
): Promise<{ cert: x509.X509Certificate; key: string }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${spec.dnsNames[0] ?? 'localhost'}`,
    issuer: issuer.cert.subjectName,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        [...spec.dnsNames.map((value) => ({ type: 'dns' as const, value })), ...(spec.ips ?? []).map((value) => ({ type: 'ip' as const, value }))],
        false,
      ),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false),
    ],
  });
  return { cert, key: await privateKeyPem(keys.privateKey) };
}

/**
 * What is wrong with a certificate and key a listener would serve, or undefined: PEM that
 * does not parse, a certificate not yet or no longer valid at `now`, a key that is not the
 * certificate's. Checked when the config loads, so a bad file is refused with a reason
 * and the certificate in force stays.
 */
export function servingCertificateProblem(chainPem: string, keyPem: string, now = Date.now()): string | undefined {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainPem);
  } catch {
    return 'the certificate file holds no PEM certificate';
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return 'the key file holds no PEM private key';
  }
  if (Date.parse(leaf.validTo) <= now) return `the certificate expired on ${new Date(Date.parse(leaf.validTo)).toISOString()}; renew it`;
  if (Date.parse(leaf.validFrom) > now) return `the certificate is not valid before ${new Date(Date.parse(leaf.validFrom)).toISOString()}`;
  if (!leaf.checkPrivateKey(key)) return 'the key is not the private key of the certificate (mismatched files?)';
  return undefined;
}

/** Where the runner keeps the local HTTPS CA and the localhost certificate, under the state folder. */
export function localTlsDir(stateDir: string): string {
  return join(stateDir, 'ingress');
}

/** The files of {@link ensureLocalhostCertificate}. */
export interface LocalhostFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** The file names of the local CA and the localhost certificate in `dir`. */
export function localhostFiles(dir: string): LocalhostFiles {
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'localhost.pem'), key: join(dir, 'localhost.key') };
}

/**
 * Makes (or keeps) the local CA and a certificate for `localhost` and 127.0.0.1/::1 that it
 * signs, in `dir` (0700; keys 0600). The CA is reused across runs, so a `--cacert` or a
 * browser exception given once keeps working; the server certificate is reissued when it
 * has less than a third of its life left. Files are written by rename, so a gateway
 * reading them never sees half of one.
 */
export async function ensureLocalhostCertificate(dir: string, now = Date.now()): Promise<LocalhostFiles> {
  const files = localhostFiles(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const caKeyFile = join(dir, 'ca.key');
  let ca: PemPair | undefined;
  try {
    ca = { cert: await readFile(files.ca, 'utf8'), key: await readFile(caKeyFile, 'utf8') };
    if (servingCertificateProblem(ca.cert, ca.key, now + 30 * DAY_MS) !== undefined) ca = undefined;
  } catch {
    ca = undefined;
  }
  let fresh = false;
  if (ca === undefined) {
    ca = await makeLocalCa('Trellis local HTTPS CA', now);
    await writeAtomically(caKeyFile, ca.key, 0o600);
    await writeAtomically(files.ca, ca.cert, 0o644);
    fresh = true;
  }
  if (!fresh) {
    try {
      const cert = await readFile(files.cert, 'utf8');
      const key = await readFile(files.key, 'utf8');
      const leaf = new X509Certificate(cert);
      const from = Date.parse(leaf.validFrom);
      const to = Date.parse(leaf.validTo);
      const issuedByCa = leaf.checkIssued(new X509Certificate(ca.cert));
      if (issuedByCa && servingCertificateProblem(cert, key, now) === undefined && to - now > (to - from) / 3) return files;
    } catch {
      // missing or unreadable: made below
    }
  }
  const server = await issueServerCertificate(ca, { dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] }, now);
  await writeAtomically(files.key, server.key, 0o600);
  await writeAtomically(files.cert, server.cert, 0o644);
  return files;
}

async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
}
