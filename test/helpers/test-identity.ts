// Test helper: workload certificates from a test CA (the real CertificateAuthority, in
// memory, one per test process), so sidecars a test configures with a snapshot, without a
// control plane, speak mutual TLS to each other as a mesh's sidecars do.
import { CertificateAuthority } from '../../src/control/ca/certificate-authority.js';
import { generateKeyPair, makeCsr, privateKeyPem } from '../../src/security/x509.js';
import { spiffeId, DEFAULT_TRUST_DOMAIN, type WorkloadName } from '../../src/security/spiffe.js';
import type { IssuedCertificate, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { splitServiceKey } from '../../src/api/names.js';

let ca: Promise<CertificateAuthority> | undefined;

/** The test process's CA (trust domain cluster.local). */
export function testCa(): Promise<CertificateAuthority> {
  return (ca ??= CertificateAuthority.open({ trustDomain: DEFAULT_TRUST_DOMAIN }));
}

/** The SPIFFE ID of service key `service` (`name` or `name.ns`) in the test trust domain. */
export function testSpiffeId(service: string): string {
  const { name, namespace } = splitServiceKey(service);
  return spiffeId({ trustDomain: DEFAULT_TRUST_DOMAIN, namespace, serviceAccount: name });
}

/** A key and a certificate for `name` from `authority` (default: the test CA). */
export async function issueFor(name: WorkloadName, authority?: CertificateAuthority): Promise<{ key: string; certificate: IssuedCertificate }> {
  const keys = await generateKeyPair();
  const issued = await (authority ?? (await testCa())).issue(await makeCsr(keys), name);
  if (typeof issued === 'string') throw new Error(`the test CA refused: ${issued}`);
  return { key: await privateKeyPem(keys.privateKey), certificate: issued };
}

/** Gives `sidecar` a certificate for service key `service` from the test CA, as its control plane would. */
export async function giveIdentity(sidecar: Sidecar, service: string): Promise<void> {
  const { name, namespace } = splitServiceKey(service);
  const { key, certificate } = await issueFor({ trustDomain: DEFAULT_TRUST_DOMAIN, namespace, serviceAccount: name });
  sidecar.identity.setCertificate(key, certificate);
}

/** Inbound listeners started by the helpers, by port, with the SPIFFE ID of their service. */
const inboundIdentities = new Map<number, string>();

/** Records that the sidecar inbound listener at `port` serves `service` (proxy-pair.ts). */
export function registerInbound(port: number, service: string): void {
  inboundIdentities.set(port, testSpiffeId(service));
}

/**
 * `upstreams` with mutual TLS to every backend whose endpoints are all inbound listeners
 * the helpers started (each expecting its service's identity), as the compiler writes it;
 * a backend with any other endpoint (a raw test server) stays plaintext.
 */
export function withPeerMtls(upstreams: Record<string, UpstreamSnapshot>): Record<string, UpstreamSnapshot> {
  const out: Record<string, UpstreamSnapshot> = {};
  for (const [key, u] of Object.entries(upstreams)) {
    const backends: UpstreamSnapshot['backends'] = {};
    for (const [name, b] of Object.entries(u.backends)) {
      const ids = b.endpoints.map((e) => inboundIdentities.get(e.port));
      const known = ids.filter((id): id is string => id !== undefined);
      backends[name] =
        b.mtls !== undefined || known.length === 0 || known.length !== ids.length ? b : { ...b, mtls: { identities: [...new Set(known)].sort() } };
    }
    out[key] = { ...u, backends };
  }
  return out;
}

/**
 * `config` for a test whose endpoints are plain servers standing in for sidecars (the
 * apps themselves): nothing there speaks mutual TLS, so the mesh's mode is DISABLE, as a
 * mesh would say of destinations without a sidecar.
 */
export function plainEndpoints<T extends object>(config: T): T & { mtlsMode: 'DISABLE' } {
  return { ...config, mtlsMode: 'DISABLE' };
}
