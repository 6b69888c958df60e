// The proxy's identity in one place: its current private key (made here, in memory,
// never written or sent), its certificate chain and the trust bundle. The TLS listeners
// and connectors of the mTLS slice read it here (`tlsMaterial()`) and rebuild their
// secure contexts on `change`, so a renewal or a root rotation reaches new handshakes
// with no restart; connections already open keep the certificate they shook hands with.
import { EventEmitter } from 'node:events';
import type { IssuedCertificate } from '../../api/protocol.js';

/** What a TLS context needs (Node's `tls.createSecureContext` options). The only place the key leaves this object. */
export interface TlsMaterial {
  /** PKCS#8 PEM. */
  key: string;
  /** The chain, PEM, the proxy's certificate first. */
  cert: string;
  /** The trust bundle's roots, PEM. */
  ca: string[];
}

/** What the admin server and logs show: never the key. */
export interface IdentityView {
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** PEM certificates, the proxy's first. */
  chain: string[];
  trustBundle: string[];
  /** When this proxy plans to renew (ISO 8601), once scheduled. */
  renewAt?: string;
}

export class WorkloadIdentity extends EventEmitter<{ change: [] }> {
  #key?: string;
  #certificate?: IssuedCertificate;
  #trustBundle: string[] = [];
  #renewAt?: number;

  /** Whether a certificate is in hand (it may have expired: see {@link notAfter}). */
  get ready(): boolean {
    return this.#key !== undefined && this.#certificate !== undefined;
  }

  get spiffeId(): string | undefined {
    return this.#certificate?.spiffeId;
  }

  /** Epoch ms the certificate expires; undefined before the first one. */
  get notAfter(): number | undefined {
    return this.#certificate ? Date.parse(this.#certificate.notAfter) : undefined;
  }

  get notBefore(): number | undefined {
    return this.#certificate ? Date.parse(this.#certificate.notBefore) : undefined;
  }

  get trustBundle(): readonly string[] {
    return this.#trustBundle;
  }

  /** A new certificate over `keyPem` (the key its CSR was made with): both replace the old ones together. */
  setCertificate(keyPem: string, certificate: IssuedCertificate): void {
    this.#key = keyPem;
    this.#certificate = certificate;
    this.#trustBundle = [...certificate.trustBundle];
    this.emit('change');
  }

  /** The roots changed (a rotation): peers' certificates are checked against these from now on. */
  setTrustBundle(trustBundle: string[]): void {
    if (trustBundle.join('') === this.#trustBundle.join('')) return;
    this.#trustBundle = [...trustBundle];
    this.emit('change');
  }

  /** Set by the renewer, for the view. */
  set renewAt(at: number | undefined) {
    this.#renewAt = at;
  }

  /** Key, chain and roots for a TLS context; undefined before the first certificate. */
  tlsMaterial(): TlsMaterial | undefined {
    if (this.#key === undefined || this.#certificate === undefined) return undefined;
    return { key: this.#key, cert: this.#certificate.chain.join(''), ca: [...this.#trustBundle] };
  }

  view(): IdentityView | undefined {
    const c = this.#certificate;
    if (!c) return undefined;
    return {
      spiffeId: c.spiffeId,
      serial: c.serial,
      notBefore: c.notBefore,
      notAfter: c.notAfter,
      chain: c.chain,
      trustBundle: this.#trustBundle,
      ...(this.#renewAt !== undefined ? { renewAt: new Date(this.#renewAt).toISOString() } : {}),
    };
  }

  /** Never the key, whatever serializes this object. */
  toJSON(): IdentityView | undefined {
    return this.view();
  }
}
