// The CA's hot path, in DER and Node's crypto alone (issue 17): checking a Trellis CSR and
// signing a workload certificate. The X.509 library builds and parses every structure
// through a generic ASN.1 schema engine, about 5 ms of the control plane's CPU per
// certificate: a registration of 1,000 proxies spent 5 s signing, in slices that held
// the event loop past 90 ms (bench --only scale). Trellis CSRs and workload certificates
// have one fixed shape each (src/security/keys.ts writes the CSR; the certificate's
// extensions are listed below), so both are written and read here as templates; the
// library stays for everything else (roots, issuers, provided CAs, unusual CSRs).
// test/control/leaf-der.test.ts checks these bytes against the library's.
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { der } from '../../security/keys.js';

/** One DER element: its tag and where its content starts and ends in the buffer. */
interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** The element at `at` (definite lengths up to 4 bytes), or undefined when it does not fit in `limit`. */
function readTlv(b: Buffer, at: number, limit: number): Tlv | undefined {
  if (at + 2 > limit) return undefined;
  const tag = b[at] as number;
  let len = b[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (b[start + i] as number);
    start += n;
  }
  const end = start + len;
  return end > limit ? undefined : { tag, start, end };
}

/** `CertificationRequestInfo`'s fixed parts around the key (keys.ts): version 0, an empty subject; no attributes after it. */
const INFO_HEAD = Buffer.from('0201003000', 'hex');
const NO_ATTRIBUTES = Buffer.from('a000', 'hex');
/** AlgorithmIdentifier { ecdsa-with-SHA256 }. */
const ECDSA_WITH_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');

/** A CSR of Trellis's own shape: its key (SPKI DER) and whether its signature verifies. */
export interface OwnCsr {
  spki: Buffer;
  verified: boolean;
}

/**
 * Reads `csr` (DER) if it has exactly the shape src/security/keys.ts writes (version 0,
 * empty subject, a P-256 key, no attributes, ecdsa-with-SHA256) and checks its signature
 * with the key it carries; undefined for anything else (the caller asks the X.509
 * library, which names what is wrong).
 */
export function readOwnCsr(csr: Buffer): OwnCsr | undefined {
  const outer = readTlv(csr, 0, csr.length);
  if (outer?.tag !== 0x30 || outer.end !== csr.length) return undefined;
  const info = readTlv(csr, outer.start, outer.end);
  if (info?.tag !== 0x30) return undefined;
  const alg = readTlv(csr, info.end, outer.end);
  if (alg?.tag !== 0x30 || !csr.subarray(info.end, alg.end).equals(ECDSA_WITH_SHA256)) return undefined;
  const sig = readTlv(csr, alg.end, outer.end);
  if (sig?.tag !== 0x03 || sig.end !== outer.end || sig.end - sig.start < 2 || csr[sig.start] !== 0) return undefined;
  if (!csr.subarray(info.start, info.start + INFO_HEAD.length).equals(INFO_HEAD)) return undefined;
  const spkiAt = info.start + INFO_HEAD.length;
  const spki = readTlv(csr, spkiAt, info.end);
  if (spki?.tag !== 0x30 || !csr.subarray(spki.end, info.end).equals(NO_ATTRIBUTES)) return undefined;
  const spkiDer = Buffer.from(csr.subarray(spkiAt, spki.end));
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return undefined;
  let verified = false;
  try {
    verified = verify('sha256', csr.subarray(outer.start, info.end), key, csr.subarray(sig.start + 1, sig.end));
  } catch {
    verified = false;
  }
  return { spki: spkiDer, verified };
}

/** The EC point of a P-256 SPKI: the BIT STRING's bits after its unused-bits byte. */
function subjectPublicKeyBits(spki: Buffer): Buffer {
  const seq = readTlv(spki, 0, spki.length);
  const alg = seq && readTlv(spki, seq.start, seq.end);
  const bits = alg && readTlv(spki, alg.end, seq.end);
  if (bits?.tag !== 0x03) throw new RangeError('not a SubjectPublicKeyInfo');
  return spki.subarray(bits.start + 1, bits.end);
}

const BOOLEAN_TRUE = Buffer.from('0101ff', 'hex');

function extension(oidHex: string, critical: boolean, value: Buffer): Buffer {
  return der(0x30, Buffer.concat([Buffer.from(oidHex, 'hex'), ...(critical ? [BOOLEAN_TRUE] : []), der(0x04, value)]));
}

/** basicConstraints (critical): not a CA. */
const BASIC_CONSTRAINTS = extension('0603551d13', true, Buffer.from('3000', 'hex'));
/** keyUsage (critical): digitalSignature. */
const KEY_USAGE = extension('0603551d0f', true, Buffer.from('03020780', 'hex'));
/** extKeyUsage: serverAuth, clientAuth. */
const EXT_KEY_USAGE = extension('0603551d25', false, Buffer.from('301406082b0601050507030106082b06010505070302', 'hex'));
const VERSION_3 = Buffer.from('a003020102', 'hex');
const EMPTY_NAME = Buffer.from('3000', 'hex');

/** X.509 Time: UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5); whole seconds. */
function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = d.getUTCFullYear();
  return year >= 1950 && year < 2050 ? der(0x17, Buffer.from(digits.slice(2), 'latin1')) : der(0x18, Buffer.from(digits, 'latin1'));
}

/** What the issuer brings to every certificate it signs (computed once per issuer). */
export interface LeafIssuer {
  /** The issuer certificate's subject Name, DER. */
  name: Buffer;
  /** Its authorityKeyIdentifier extension for the certificates it signs, DER. */
  authorityKeyId: Buffer;
  key: KeyObject;
}

export interface LeafFields {
  /** The serial's bytes: positive, no leading zero byte (a minimal DER INTEGER). */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** The subject's key, SPKI DER (from its CSR). */
  spki: Buffer;
  /** The one URI SAN (critical; the subject is empty). */
  spiffeId: string;
}

/** The TBSCertificate of a workload certificate (the same bytes the X.509 library writes for the CA's extension list). */
export function leafTbs(issuer: LeafIssuer, f: LeafFields): Buffer {
  const san = extension('0603551d11', true, der(0x30, der(0x86, Buffer.from(f.spiffeId, 'latin1'))));
  const ski = extension('0603551d0e', false, der(0x04, createHash('sha1').update(subjectPublicKeyBits(f.spki)).digest()));
  const extensions = der(0xa3, der(0x30, Buffer.concat([BASIC_CONSTRAINTS, KEY_USAGE, EXT_KEY_USAGE, san, issuer.authorityKeyId, ski])));
  return der(
    0x30,
    Buffer.concat([
      VERSION_3,
      der(0x02, f.serial),
      ECDSA_WITH_SHA256,
      issuer.name,
      der(0x30, Buffer.concat([time(f.notBefore), time(f.notAfter)])),
      EMPTY_NAME,
      f.spki,
      extensions,
    ]),
  );
}

/** A signed workload certificate, DER. */
export function signLeaf(issuer: LeafIssuer, f: LeafFields): Buffer {
  const tbs = leafTbs(issuer, f);
  // Node signs ECDSA in DER, the SEQUENCE { r, s } X.509 wants.
  const signature = sign('sha256', tbs, issuer.key);
  return der(0x30, Buffer.concat([tbs, ECDSA_WITH_SHA256, der(0x03, Buffer.concat([Buffer.of(0), signature]))]));
}
