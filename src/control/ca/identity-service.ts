// The CA's side of the proxy stream: answers a registered proxy's CSR with a certificate
// naming the instance its bootstrap credential proved (or with why not), remembers the
// public part of the last certificate each proxy got (for the admin API and `trellis
// identity`), and tells the distributor when the trust bundle changes.
import type { ControlMessage, IssuedCertificate, ProxyInfo } from '../../api/protocol.js';
import { TrellisError } from '../../errors.js';
import type { ControlMetrics } from '../control-metrics.js';
import type { MeshModel } from '../model.js';
import type { CertificateAuthority } from './certificate-authority.js';
import { workloadName } from './workload-names.js';
import type { WorkloadName } from '../../security/spiffe.js';

/** The public part of an issued certificate, as the admin API shows it. */
export interface IssuedView extends IssuedCertificate {
  proxy: string;
  service: string;
  issuedAt: string;
}

export interface IdentityServiceOptions {
  ca: CertificateAuthority;
  model: MeshModel;
  metrics?: ControlMetrics;
  log?: (line: string) => void;
  now?: () => number;
}

export class IdentityService {
  readonly ca: CertificateAuthority;
  readonly #o: IdentityServiceOptions;
  readonly #log: (line: string) => void;
  readonly #issued = new Map<string, IssuedView>();

  constructor(o: IdentityServiceOptions) {
    this.#o = o;
    this.ca = o.ca;
    this.#log = o.log ?? (() => {});
  }

  /**
   * Signs `csr` for `proxy` (a proxy whose credential was checked); the answer to send back.
   * `workload` is the name its credential proved (a ServiceAccount on Kubernetes); absent:
   * the service's own (workload-names.ts).
   */
  async certify(proxy: ProxyInfo, id: number, csr: string, workload?: WorkloadName): Promise<ControlMessage> {
    const name = workload ?? workloadName(this.ca.trustDomain, proxy.service, this.#o.model.service(proxy.service));
    let result: IssuedCertificate | string;
    try {
      result = await this.ca.issue(csr, name);
    } catch (err) {
      const e = err instanceof TrellisError ? err : new TrellisError('TRELLIS_E_CA_UNAVAILABLE', { reason: err instanceof Error ? err.message : String(err) });
      this.#o.metrics?.csrRefused('ca-unavailable');
      this.#log(`control: ca: could not sign for ${proxy.kind} ${proxy.id}: ${e.message}`);
      return { type: 'csr-refused', id, code: e.code, message: e.message };
    }
    if (typeof result === 'string') {
      const e = new TrellisError('TRELLIS_E_CSR_INVALID', { reason: result });
      this.#o.metrics?.csrRefused('invalid');
      this.#log(`control: ca: refused the CSR of ${proxy.kind} ${proxy.id}: ${result}`);
      return { type: 'csr-refused', id, code: e.code, message: e.message };
    }
    this.#o.metrics?.issued();
    const now = (this.#o.now ?? Date.now)();
    this.#issued.set(proxy.id, { ...result, proxy: proxy.id, service: proxy.service, issuedAt: new Date(now).toISOString() });
    this.#log(`control: ca: issued ${result.spiffeId} to ${proxy.kind} ${proxy.id} (serial ${result.serial}, valid until ${result.notAfter})`);
    return { type: 'certificate', id, certificate: result };
  }

  /** A CSR that arrived while another of the same stream was being signed. */
  busy(proxy: ProxyInfo, id: number): ControlMessage {
    this.#o.metrics?.csrRefused('busy');
    const e = new TrellisError('TRELLIS_E_CSR_INVALID', { reason: 'one certificate request at a time per stream; wait for the answer to the last one' });
    this.#log(`control: ca: refused a CSR of ${proxy.kind} ${proxy.id}: another is in progress`);
    return { type: 'csr-refused', id, code: e.code, message: e.message };
  }

  /** The last certificate issued to a proxy id (its public part), if any. */
  issued(proxyId: string): IssuedView | undefined {
    return this.#issued.get(proxyId);
  }

  /** Every proxy's last certificate. */
  allIssued(): IssuedView[] {
    return [...this.#issued.values()].sort((a, b) => (a.proxy < b.proxy ? -1 : a.proxy > b.proxy ? 1 : 0));
  }
}
