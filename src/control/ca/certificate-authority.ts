// The mesh's certificate authority: a trust anchor (root) and an issuer (intermediate)
// that signs short-lived workload certificates, Linkerd's shape. The CA is either made
// by Trellis on first start and kept in the state folder (ca.json, mode 0600, in a 0700
// folder; reused on every restart), or given by the user (files named in the Mesh's
// `spec.identity.ca`). Workload certificates carry one SPIFFE ID as a critical URI SAN and
// an empty subject (RFC 5280 4.2.1.6), live 24 h by default, and never outlive their
// issuer: Linkerd's identity service once went on issuing already-expired certificates
// after its root expired (linkerd2 #3676, #4287), so a CA that cannot issue a
// certificate valid for a while refuses with a reason instead.
//
// Root rotation (generated CA) is staged, because a proxy refuses a peer whose root it
// has not been told of yet: the new root is added to the trust bundle first and only
// signs (through its own issuer) after a propagation delay; the old root stays in the
// bundle until every certificate its issuer signed has expired. During that overlap the
// bundle holds both, so old and new certificates verify everywhere.
import { EventEmitter } from 'node:events';
import { KeyObject, randomBytes, type webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TrellisError } from '../../errors.js';
import {
  certificatesOf,
  ECDSA_SHA256,
  generateKeyPair,
  importPrivateKeyPem,
  keyMatchesCertificate,
  pemOf,
  privateKeyPem,
  serialOf,
  x509,
} from '../../security/x509.js';
import { spiffeId, type WorkloadName } from '../../security/spiffe.js';
import type { IssuedCertificate } from '../../api/protocol.js';
import { checkCsr } from './csr.js';
import { type LeafIssuer, signLeaf } from './leaf-der.js';
import { pem } from '../../security/keys.js';
import { signServerCertificate } from '../../security/local-tls.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Linkerd's and Istio's workload certificate lifetime. */
export const DEFAULT_CERTIFICATE_LIFETIME_MS = DAY;
/** A generated root lives 10 years (Linkerd's trust anchor in its cert-manager guide). */
export const DEFAULT_ROOT_LIFETIME_MS = 3650 * DAY;
/** A generated issuer lives a year and is replaced (same root) when a third of that is left. */
export const DEFAULT_ISSUER_LIFETIME_MS = 365 * DAY;
/** How long a new root is only in the trust bundle before it signs: time for every proxy to learn it. */
export const DEFAULT_PROPAGATION_MS = HOUR;
/** Certificates start a minute back, so a peer whose clock is a little behind accepts them. */
const BACKDATE_MS = 60_000;
/** The shortest validity worth issuing; less means the issuer is about to expire. */
const MIN_VALIDITY_MS = 60_000;

export interface CaFiles {
  /** PEM: the issuer's certificate, then any intermediates up to (not including) a root. */
  certificate: string;
  /** PEM: the issuer's PKCS#8 P-256 private key. */
  key: string;
  /** PEM: the roots proxies trust; absent: the certificate file's last certificate, which must be self-signed. */
  trustBundle?: string;
}

export interface CertificateAuthorityOptions {
  trustDomain: string;
  certificateLifetimeMs?: number;
  /** The clock (ms since the epoch); tests pass a fake one. */
  now?: () => number;
  log?: (line: string) => void;
  /** Where a generated CA is kept (ca.json); absent: in memory only. Ignored with `files`. */
  dir?: string;
  /** A CA the user provides (paths resolved); the generated one is not used. */
  files?: CaFiles;
  rootLifetimeMs?: number;
  issuerLifetimeMs?: number;
  propagationMs?: number;
}

/** One signing pair. */
interface Signer {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

/** A root of the generated CA, with its issuer and its place in a rotation. */
interface Root {
  root: Signer;
  issuer: Signer;
  /** Signs from then on (a new root is first only trusted). */
  activeFrom: number;
  /** Dropped from the trust bundle then (an old root, during a rotation). */
  retireAt?: number;
}

/** What the CA shows (admin API, `trellis identity`): no key, ever. */
export interface CaView {
  trustDomain: string;
  source: 'generated' | 'provided';
  certificateLifetimeMs: number;
  roots: { subject: string; serial: string; notBefore: string; notAfter: string; active: boolean; retireAt?: string }[];
  issuer: { subject: string; serial: string; notAfter: string };
}

interface StoredCa {
  version: 1;
  roots: { cert: string; key: string; issuerCert: string; issuerKey: string; activeFrom: number; retireAt?: number }[];
}

export class CertificateAuthority extends EventEmitter<{ bundle: [string[]] }> {
  readonly trustDomain: string;
  readonly certificateLifetimeMs: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #o: CertificateAuthorityOptions;
  /** Generated CA: its roots, oldest first. */
  #roots: Root[] = [];
  /** Provided CA: the issuer, the certificates between it and a root, and the bundle. */
  #provided?: { issuer: Signer; intermediates: x509.X509Certificate[]; bundle: x509.X509Certificate[] };
  #bundleKey = '';
  #maintaining?: Promise<void>;

  private constructor(o: CertificateAuthorityOptions) {
    super();
    this.#o = o;
    this.trustDomain = o.trustDomain;
    this.certificateLifetimeMs = o.certificateLifetimeMs ?? DEFAULT_CERTIFICATE_LIFETIME_MS;
    this.#now = o.now ?? Date.now;
    this.#log = o.log ?? (() => {});
  }

  /**
   * Opens the CA: loads the user's files, or the generated CA kept in `dir`, or makes
   * one (and keeps it). Rejects with TRELLIS_E_CA_INVALID when files are unusable.
   */
  static async open(o: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const ca = new CertificateAuthority(o);
    if (o.files) await ca.#loadProvided(o.files);
    else await ca.#loadOrCreate();
    await ca.maintain();
    ca.#bundleKey = ca.trustBundle().join('');
    return ca;
  }

  get source(): 'generated' | 'provided' {
    return this.#provided ? 'provided' : 'generated';
  }

  /** The roots proxies trust now, PEM: during a rotation, old and new. */
  trustBundle(): string[] {
    const now = this.#now();
    if (this.#provided) return this.#provided.bundle.map((c) => pemOf(c));
    return this.#roots.filter((r) => r.retireAt === undefined || r.retireAt > now).map((r) => pemOf(r.root.cert));
  }

  /**
   * Signs a workload certificate for `name` over the key of a checked CSR. A string
   * result is why the CSR was refused (TRELLIS_E_CSR_INVALID); a CA that cannot issue
   * (its issuer expired) throws TRELLIS_E_CA_UNAVAILABLE.
   */
  async issue(csrPem: string, name: WorkloadName): Promise<IssuedCertificate | string> {
    const csr = await checkCsr(csrPem);
    if (typeof csr === 'string') return csr;
    await this.maintain();
    const now = this.#now();
    const { issuer, intermediates } = this.#signer(now);
    const notAfter = Math.min(now + this.certificateLifetimeMs, issuer.cert.notAfter.getTime());
    if (notAfter - now < MIN_VALIDITY_MS) {
      throw new TrellisError('TRELLIS_E_CA_UNAVAILABLE', {
        reason: `the issuer ${issuer.cert.subject} (serial ${serialOf(issuer.cert)}) expires at ${issuer.cert.notAfter.toISOString()}; give the mesh a new issuer (spec.identity.ca)`,
      });
    }
    const id = spiffeId(name);
    const signer = await leafIssuerOf(issuer);
    const serial = randomSerial();
    const notBeforeAt = new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000);
    const notAfterAt = new Date(Math.floor(notAfter / 1000) * 1000);
    const der = signLeaf(signer.leaf, { serial: Buffer.from(serial, 'hex'), notBefore: notBeforeAt, notAfter: notAfterAt, spki: csr.spki, spiffeId: id });
    return {
      spiffeId: id,
      chain: [`${pem(der, 'CERTIFICATE')}\n`, signer.pem, ...intermediates.map((c) => pemOf(c))],
      trustBundle: this.trustBundle(),
      serial,
      notBefore: notBeforeAt.toISOString(),
      notAfter: notAfterAt.toISOString(),
    };
  }

  /**
   * Signs a TLS server certificate for `dnsNames` over a key made here (the sidecar
   * injection webhook's: the API server trusts it by the trust bundle in the
   * MutatingWebhookConfiguration's caBundle). It lives `lifetimeMs`, never past the issuer.
   */
  async issueServing(dnsNames: readonly string[], lifetimeMs: number): Promise<{ chain: string; key: string; notBefore: string; notAfter: string }> {
    await this.maintain();
    const now = this.#now();
    const { issuer, intermediates } = this.#signer(now);
    const notAfter = Math.min(now + lifetimeMs, issuer.cert.notAfter.getTime());
    if (notAfter - now < MIN_VALIDITY_MS) {
      throw new TrellisError('TRELLIS_E_CA_UNAVAILABLE', {
        reason: `the issuer ${issuer.cert.subject} (serial ${serialOf(issuer.cert)}) expires at ${issuer.cert.notAfter.toISOString()}; give the mesh a new issuer (spec.identity.ca)`,
      });
    }
    const notBeforeAt = new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000);
    const notAfterAt = new Date(Math.floor(notAfter / 1000) * 1000);
    const signed = await signServerCertificate(issuer, { dnsNames, notBefore: notBeforeAt, notAfter: notAfterAt });
    return {
      chain: [signed.cert, issuer.cert, ...intermediates].map((c) => pemOf(c)).join(''),
      key: `${signed.key}\n`,
      notBefore: notBeforeAt.toISOString(),
      notAfter: notAfterAt.toISOString(),
    };
  }

  /**
   * Starts a root rotation (generated CA only): a new root joins the bundle now and signs
   * after the propagation delay; the roots before it leave the bundle once the last
   * certificate their issuers could have signed has expired.
   */
  async rotateRoot(): Promise<void> {
    if (this.#provided) {
      throw new TrellisError('TRELLIS_E_CA_INVALID', { reason: 'a provided CA is rotated by its files: add the new root to the trust bundle file first' });
    }
    const now = this.#now();
    const activeFrom = now + (this.#o.propagationMs ?? DEFAULT_PROPAGATION_MS);
    const retireAt = activeFrom + this.certificateLifetimeMs + BACKDATE_MS;
    for (const r of this.#roots) r.retireAt = Math.min(r.retireAt ?? retireAt, retireAt);
    this.#roots.push(await this.#newRoot(now, activeFrom));
    this.#log(
      `control: ca: root rotation started: the new root signs from ${new Date(activeFrom).toISOString()}, the old leaves the trust bundle at ${new Date(retireAt).toISOString()}`,
    );
    await this.#save();
    this.#announce();
  }

  /**
   * Keeps the generated CA current: replaces an issuer with a third of its life left,
   * starts a root rotation when the active root has a fifth of its life left, drops
   * retired roots; emits `bundle` when the trust bundle changed. Runs on every issue and
   * on the control plane's timer; concurrent calls share one run.
   */
  maintain(): Promise<void> {
    this.#maintaining ??= this.#maintain().finally(() => {
      this.#maintaining = undefined;
    });
    return this.#maintaining;
  }

  async #maintain(): Promise<void> {
    if (this.#provided) return this.#announce();
    const now = this.#now();
    let changed = false;
    const kept = this.#roots.filter((r) => r.retireAt === undefined || r.retireAt > now);
    if (kept.length !== this.#roots.length) {
      this.#log(`control: ca: ${this.#roots.length - kept.length} retired root(s) left the trust bundle`);
      this.#roots = kept;
      changed = true;
    }
    const issuerLifetime = this.#o.issuerLifetimeMs ?? DEFAULT_ISSUER_LIFETIME_MS;
    for (const r of this.#roots) {
      if (r.issuer.cert.notAfter.getTime() - now < issuerLifetime / 3 && r.root.cert.notAfter.getTime() > now) {
        r.issuer = await this.#newIssuer(r.root, now);
        this.#log(
          `control: ca: new issuer ${serialOf(r.issuer.cert)} under root ${serialOf(r.root.cert)} (valid until ${r.issuer.cert.notAfter.toISOString()})`,
        );
        changed = true;
      }
    }
    const newest = this.#roots.at(-1);
    const rootLifetime = this.#o.rootLifetimeMs ?? DEFAULT_ROOT_LIFETIME_MS;
    if (changed) await this.#save();
    if (newest && newest.root.cert.notAfter.getTime() - now < rootLifetime / 5) await this.rotateRoot();
    else this.#announce();
  }

  /** The view the admin API and CLI show. */
  view(): CaView {
    const now = this.#now();
    const { issuer } = this.#signer(now);
    const roots = this.#provided
      ? this.#provided.bundle.map((c) => ({ ...certView(c), active: true }))
      : this.#roots.map((r) => ({
          ...certView(r.root.cert),
          active: r === this.#activeRoot(now),
          ...(r.retireAt !== undefined ? { retireAt: new Date(r.retireAt).toISOString() } : {}),
        }));
    return {
      trustDomain: this.trustDomain,
      source: this.source,
      certificateLifetimeMs: this.certificateLifetimeMs,
      roots,
      issuer: { subject: issuer.cert.subject, serial: serialOf(issuer.cert), notAfter: issuer.cert.notAfter.toISOString() },
    };
  }

  #announce(): void {
    const bundle = this.trustBundle();
    const key = bundle.join('');
    if (key === this.#bundleKey) return;
    this.#bundleKey = key;
    this.emit('bundle', bundle);
  }

  #activeRoot(now: number): Root | undefined {
    let active: Root | undefined;
    for (const r of this.#roots) if (r.activeFrom <= now) active = r;
    return active ?? this.#roots[0];
  }

  #signer(now: number): { issuer: Signer; intermediates: x509.X509Certificate[] } {
    if (this.#provided) return { issuer: this.#provided.issuer, intermediates: this.#provided.intermediates };
    const active = this.#activeRoot(now);
    if (!active) throw new TrellisError('TRELLIS_E_CA_UNAVAILABLE', { reason: 'the CA has no root' });
    return { issuer: active.issuer, intermediates: [] };
  }

  async #newRoot(now: number, activeFrom: number): Promise<Root> {
    const keys = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=root.${this.trustDomain}, O=Trellis`,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + (this.#o.rootLifetimeMs ?? DEFAULT_ROOT_LIFETIME_MS)),
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
      ],
    });
    const root = { cert, key: keys.privateKey };
    return { root, issuer: await this.#newIssuer(root, now), activeFrom };
  }

  async #newIssuer(root: Signer, now: number): Promise<Signer> {
    const keys = await generateKeyPair();
    const notAfter = Math.min(now + (this.#o.issuerLifetimeMs ?? DEFAULT_ISSUER_LIFETIME_MS), root.cert.notAfter.getTime());
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=identity.${this.trustDomain}, O=Trellis`,
      issuer: root.cert.subjectName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: root.key,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.AuthorityKeyIdentifierExtension.create(root.cert, false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
      ],
    });
    return { cert, key: keys.privateKey };
  }

  async #loadOrCreate(): Promise<void> {
    const file = this.#o.dir ? path.join(this.#o.dir, 'ca.json') : undefined;
    if (file) {
      let text: string | undefined;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (text !== undefined) {
        this.#roots = await parseStored(text, file);
        // A key file a user copied or unpacked with looser permissions is tightened again.
        await chmod(file, 0o600);
        this.#log(`control: ca: using the mesh CA kept in ${file} (${this.#roots.length} root(s))`);
        return;
      }
    }
    const now = this.#now();
    this.#roots = [await this.#newRoot(now, now)];
    await this.#save();
    this.#log(`control: ca: made a new mesh CA (ECDSA P-256 root and issuer)${file ? `, kept in ${file}` : ', in memory only'}`);
  }

  async #save(): Promise<void> {
    if (!this.#o.dir || this.#provided) return;
    const dir = this.#o.dir;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const stored: StoredCa = { version: 1, roots: [] };
    for (const r of this.#roots) {
      stored.roots.push({
        cert: pemOf(r.root.cert),
        key: await privateKeyPem(r.root.key),
        issuerCert: pemOf(r.issuer.cert),
        issuerKey: await privateKeyPem(r.issuer.key),
        activeFrom: r.activeFrom,
        ...(r.retireAt !== undefined ? { retireAt: r.retireAt } : {}),
      });
    }
    // Written whole to a temporary file (created 0600) and renamed: a crash mid-write
    // never leaves a CA half written, and the key is never readable by others, even briefly.
    const file = path.join(dir, 'ca.json');
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(stored, null, 2), { mode: 0o600 });
    await rename(tmp, file);
    await writeFile(path.join(dir, 'trust-bundle.pem'), this.trustBundle().join(''), { mode: 0o644 });
  }

  async #loadProvided(files: CaFiles): Promise<void> {
    const read = async (what: string, file: string): Promise<string> => {
      try {
        return await readFile(file, 'utf8');
      } catch (err) {
        throw new TrellisError('TRELLIS_E_CA_INVALID', { reason: `cannot read the ${what} file ${file}: ${(err as Error).message}` });
      }
    };
    const invalid = (reason: string): TrellisError => new TrellisError('TRELLIS_E_CA_INVALID', { reason });
    let certs: x509.X509Certificate[];
    try {
      certs = certificatesOf(await read('certificate', files.certificate));
    } catch (err) {
      if (err instanceof TrellisError) throw err;
      throw invalid(`${files.certificate} holds no readable PEM certificate`);
    }
    if (certs.length === 0) throw invalid(`${files.certificate} holds no PEM certificate`);
    let key: CryptoKey;
    try {
      key = await importPrivateKeyPem(await read('key', files.key));
    } catch (err) {
      if (err instanceof TrellisError) throw err;
      throw invalid(`${files.key} holds no PKCS#8 ECDSA P-256 private key (convert with: openssl pkcs8 -topk8 -nocrypt -in KEY)`);
    }
    const issuer = certs[0] as x509.X509Certificate;
    if (!(await keyMatchesCertificate(key, issuer))) throw invalid(`the key in ${files.key} is not the key of the first certificate in ${files.certificate}`);
    const bc = issuer.getExtension(x509.BasicConstraintsExtension);
    const ku = issuer.getExtension(x509.KeyUsagesExtension);
    if (!bc?.ca || (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0)) {
      throw invalid(`the first certificate in ${files.certificate} is not a CA certificate (basicConstraints CA:TRUE, keyUsage keyCertSign)`);
    }
    let bundle: x509.X509Certificate[];
    if (files.trustBundle !== undefined) {
      try {
        bundle = certificatesOf(await read('trust bundle', files.trustBundle));
      } catch (err) {
        if (err instanceof TrellisError) throw err;
        throw invalid(`${files.trustBundle} holds no readable PEM certificate`);
      }
      if (bundle.length === 0) throw invalid(`${files.trustBundle} holds no PEM certificate`);
    } else {
      const last = certs.at(-1) as x509.X509Certificate;
      if (!(await last.isSelfSigned()))
        throw invalid(`name the roots in spec.identity.ca.trustBundle: the last certificate in ${files.certificate} is not a root`);
      bundle = [last];
    }
    const now = this.#now();
    const expired = [...certs, ...bundle].find((c) => c.notAfter.getTime() <= now);
    if (expired) throw invalid(`${expired.subject} (serial ${serialOf(expired)}) expired at ${expired.notAfter.toISOString()}`);
    const chain = await new x509.X509ChainBuilder({ certificates: [...certs, ...bundle] }).build(issuer);
    const top = chain.at(-1);
    if (!top || !bundle.some((b) => b.equal(top))) throw invalid(`the certificate in ${files.certificate} does not chain to a root of the trust bundle`);
    const intermediates = certs.slice(1).filter((c) => !bundle.some((b) => b.equal(c)));
    const selfSignedIssuer = bundle.some((b) => b.equal(issuer));
    this.#provided = { issuer: { cert: issuer, key }, intermediates, bundle };
    this.#log(
      `control: ca: using the provided ${selfSignedIssuer ? 'root' : 'issuer'} ${issuer.subject} (serial ${serialOf(issuer)}, valid until ${issuer.notAfter.toISOString()}), ${bundle.length} root(s) in the trust bundle`,
    );
  }
}

function certView(c: x509.X509Certificate): { subject: string; serial: string; notBefore: string; notAfter: string } {
  return { subject: c.subject, serial: serialOf(c), notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString() };
}

/** A positive 128-bit serial (the top bit clear: DER integers are signed). */
/** 16 random bytes, lower-case hex: a positive DER INTEGER with no leading zero byte (so its hex is the serial's). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f || 1;
  return b.toString('hex');
}

/** An issuer's parts of every certificate it signs, and its PEM: computed once per issuer. */
interface IssuerParts {
  leaf: LeafIssuer;
  pem: string;
}
const issuerParts = new WeakMap<x509.X509Certificate, Promise<IssuerParts>>();

function leafIssuerOf(issuer: Signer): Promise<IssuerParts> {
  let parts = issuerParts.get(issuer.cert);
  if (parts === undefined) {
    parts = (async () => ({
      leaf: {
        name: Buffer.from(issuer.cert.subjectName.toArrayBuffer()),
        authorityKeyId: Buffer.from((await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false)).rawData),
        key: KeyObject.from(issuer.key as webcrypto.CryptoKey),
      },
      pem: pemOf(issuer.cert),
    }))();
    issuerParts.set(issuer.cert, parts);
  }
  return parts;
}

async function parseStored(text: string, file: string): Promise<Root[]> {
  const invalid = (reason: string): TrellisError =>
    new TrellisError('TRELLIS_E_CA_INVALID', { reason: `${file}: ${reason}; move it away to make a new CA (proxies then need new certificates)` });
  let stored: StoredCa;
  try {
    stored = JSON.parse(text) as StoredCa;
  } catch {
    throw invalid('not valid JSON');
  }
  if (stored?.version !== 1 || !Array.isArray(stored.roots) || stored.roots.length === 0) throw invalid('not a Trellis CA (version 1 with roots)');
  const roots: Root[] = [];
  for (const r of stored.roots) {
    try {
      roots.push({
        root: { cert: new x509.X509Certificate(r.cert), key: await importPrivateKeyPem(r.key) },
        issuer: { cert: new x509.X509Certificate(r.issuerCert), key: await importPrivateKeyPem(r.issuerKey) },
        activeFrom: Number(r.activeFrom),
        ...(typeof r.retireAt === 'number' ? { retireAt: r.retireAt } : {}),
      });
    } catch {
      throw invalid('a root or issuer in it does not parse');
    }
  }
  return roots;
}
