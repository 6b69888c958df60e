// Mutual TLS between sidecars, from this proxy's side: the secure contexts made from its
// identity (rebuilt on every `change`, a renewal or a root rotation, so new handshakes
// take the new certificate and roots while open connections keep theirs), the options a
// connection to a peer sidecar opens with (its certificate, the trust bundle, the SPIFFE ID
// the server must present, a resumed session), the TLS servers of the inbound listeners,
// and who a verified peer is.
//
// Handshakes stay off the request path: the codecs pool connections as before, and a
// connection to an endpoint resumes the last TLS session it had (one ticket per endpoint).
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import type { Direction } from '../../telemetry/metrics.js';
import { parseSpiffeId, type WorkloadName } from '../../security/spiffe.js';
import type { PeerMtls } from '../../api/protocol.js';
import type { WorkloadIdentity } from './workload-identity.js';
import { handshakeDetail, handshakeFailure, IdentityMismatch, type HandshakeFailure } from './handshake-failure.js';

/** How long a TLS handshake may take before the connection is closed (Envoy's transport socket connect timeout is 10 s too). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** At most this many handshake-failure log lines a minute; the rest are counted (metric, and the next line written). */
const FAILURE_LOG_PER_MINUTE = 20;

export interface MeshTlsOptions {
  identity: WorkloadIdentity;
  /** Counts a refused handshake (trellis_tls_handshake_failures_total). */
  failed: (direction: Direction, reason: HandshakeFailure) => void;
  /** Counts an outbound connection that finished its mutual TLS handshake (trellis_tls_connections_total). */
  connected?: () => void;
  log: (line: string) => void;
  /** The clock of the log's per-minute limit (tests). */
  now?: () => number;
}

/** Who a verified peer is, once per connection. */
export interface VerifiedPeer {
  readonly name: WorkloadName;
  readonly spiffeId: string;
}

/** The URI SAN `spiffe://…` of a certificate as node shows it (`URI:spiffe://…, DNS:…`). */
export function spiffeUriOf(cert: { subjectaltname?: string } | undefined): string | undefined {
  const san = cert?.subjectaltname;
  if (typeof san !== 'string') return undefined;
  for (const part of san.split(', ')) if (part.startsWith('URI:spiffe://')) return part.slice(4);
  return undefined;
}

/**
 * The peer `verifiedPeer` accepted, per TLS socket: the connection's layers
 * (connection-peer.ts) read it from here rather than parse the certificate again.
 */
const verifiedPeers = new WeakMap<object, VerifiedPeer>();

/** The peer verifiedPeer() accepted on `socket`, if it did. */
export function peerVerifiedOn(socket: object): VerifiedPeer | undefined {
  return verifiedPeers.get(socket);
}

export class MeshTls {
  readonly #o: MeshTlsOptions;
  #client: tls.SecureContext | undefined;
  /** The material the inbound TLS servers were last given (tls.Server#setSecureContext takes options, not a context). */
  #serverOptions: tls.SecureContextOptions | undefined;
  readonly #servers = new Set<tls.Server>();
  /** The last TLS session of each peer endpoint (`host:port`), offered when connecting there again. */
  readonly #sessions = new Map<string, Buffer>();
  /** Session tickets stay valid across a renewal: one key for every context of this proxy. */
  readonly #ticketKeys = randomBytes(48);
  /** checkServerIdentity per expected identity list, made once per list. */
  readonly #checks = new WeakMap<PeerMtls, (host: string, cert: tls.PeerCertificate) => Error | undefined>();
  #trustDomain: string | undefined;
  #log = { minute: 0, written: 0, suppressed: 0 };

  constructor(o: MeshTlsOptions) {
    this.#o = o;
    o.identity.on('change', () => this.#rebuild());
    this.#rebuild();
  }

  /** Whether this proxy has a certificate to shake hands with. */
  get ready(): boolean {
    return this.#client !== undefined;
  }

  /** The trust domain of this proxy's own SPIFFE ID: peers of another are refused. */
  get trustDomain(): string | undefined {
    return this.#trustDomain;
  }

  #rebuild(): void {
    const m = this.#o.identity.tlsMaterial();
    if (m === undefined) return;
    this.#trustDomain = parseSpiffeId(this.#o.identity.spiffeId ?? '')?.trustDomain;
    this.#client = tls.createSecureContext({ key: m.key, cert: m.cert, ca: m.ca });
    this.#serverOptions = { key: m.key, cert: m.cert, ca: m.ca, ticketKeys: this.#ticketKeys };
    for (const s of this.#servers) s.setSecureContext(this.#serverOptions);
    // A resumed session skips the chain check: after a renewal or a rotation (a root may
    // have left the bundle), every peer is verified again once.
    this.#sessions.clear();
  }

  /**
   * The options of a connection to the peer sidecar at `key` (`host:port`) expecting
   * `peer`'s identities, speaking `alpn`; undefined while this proxy has no certificate.
   */
  connectOptions(key: string, peer: PeerMtls, alpn: 'h2' | 'http/1.1' | undefined): tls.ConnectionOptions | undefined {
    const secureContext = this.#client;
    if (secureContext === undefined) return undefined;
    let check = this.#checks.get(peer);
    if (check === undefined) this.#checks.set(peer, (check = this.#serverIdentityCheck(peer.identities)));
    const session = this.#sessions.get(key);
    return {
      secureContext,
      checkServerIdentity: check,
      ...(alpn !== undefined ? { ALPNProtocols: [alpn] } : {}),
      ...(session !== undefined ? { session } : {}),
    };
  }

  /** Keeps `socket`'s sessions for the next connection to `key`, and reports its handshake failure. */
  watchClient(socket: tls.TLSSocket, key: string): void {
    socket.on('session', (s: Buffer) => this.#sessions.set(key, s));
    const onError = (err: Error): void => this.#failed('outbound', handshakeFailure(err), `connecting to ${key}`, err);
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      socket.removeListener('error', onError);
      this.#o.connected?.();
    });
  }

  /** Forgets sessions of endpoints no longer in the snapshot. */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const key of this.#sessions.keys()) if (!keys.has(key)) this.#sessions.delete(key);
  }

  #serverIdentityCheck(identities: readonly string[]): (host: string, cert: tls.PeerCertificate) => Error | undefined {
    const expected = new Set(identities);
    return (_host, cert) => {
      const id = spiffeUriOf(cert);
      if (id !== undefined && expected.has(id)) return undefined;
      const name = id === undefined ? undefined : parseSpiffeId(id);
      if (name !== undefined && name.trustDomain !== this.#trustDomain)
        return new IdentityMismatch(
          'TRELLIS_WRONG_TRUST_DOMAIN',
          `the server's certificate is of trust domain ${name.trustDomain}, not ${this.#trustDomain ?? '?'}`,
        );
      return new IdentityMismatch(
        'TRELLIS_WRONG_IDENTITY',
        `the server's certificate names ${name !== undefined && id !== undefined ? id : 'no SPIFFE ID'}, expected ${[...expected].join(' or ')}`,
      );
    };
  }

  /**
   * A TLS server for an inbound listener (connections are handed to it with
   * `emit('connection', socket)`): it asks for the client's certificate and checks it
   * after the handshake (`verifiedPeer`), so every refusal is counted with its reason.
   */
  server(onSecure: (socket: tls.TLSSocket) => void): tls.Server {
    const server = tls.createServer({
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ...(this.#serverOptions ?? { ticketKeys: this.#ticketKeys }),
    });
    server.on('secureConnection', onSecure);
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      socket.destroy();
      this.#failed('inbound', this.ready ? handshakeFailure(err) : 'no-identity', fromOf(socket), err);
    });
    this.#servers.add(server);
    return server;
  }

  /**
   * The verified peer of an accepted TLS connection; undefined (and the connection
   * counted, logged and destroyed) when its certificate is refused.
   */
  verifiedPeer(socket: tls.TLSSocket): VerifiedPeer | undefined {
    let cert: tls.PeerCertificate | undefined;
    try {
      cert = socket.getPeerCertificate();
    } catch {
      cert = undefined;
    }
    let reason: HandshakeFailure | undefined;
    let detail: string | undefined;
    const id = spiffeUriOf(cert);
    const name = id === undefined ? undefined : parseSpiffeId(id);
    if (cert === undefined || Object.keys(cert).length === 0) reason = 'no-certificate';
    else if (!socket.authorized) {
      reason = handshakeFailure(String(socket.authorizationError));
      detail = String(socket.authorizationError);
    } else if (name === undefined || id === undefined) {
      reason = 'wrong-identity';
      detail = 'the certificate has no SPIFFE ID';
    } else if (name.trustDomain !== this.#trustDomain) {
      reason = 'wrong-trust-domain';
      detail = `trust domain ${name.trustDomain}, not ${this.#trustDomain ?? '?'}`;
    }
    if (reason !== undefined || name === undefined || id === undefined) {
      this.#failed('inbound', reason ?? 'wrong-identity', fromOf(socket), detail ?? reason ?? 'refused');
      socket.destroy();
      return undefined;
    }
    const peer = { name, spiffeId: id };
    verifiedPeers.set(socket, peer);
    return peer;
  }

  /** A plaintext client refused by a STRICT listener. */
  refusedPlaintext(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): void {
    this.#failed('inbound', 'plaintext', fromOf(socket), 'plaintext at a STRICT listener');
  }

  /** Counts a refusal, and logs it (never more than FAILURE_LOG_PER_MINUTE lines a minute). */
  #failed(direction: Direction, reason: HandshakeFailure, where: string, err: unknown): void {
    this.#o.failed(direction, reason);
    const log = this.#log;
    const minute = Math.floor((this.#o.now ?? Date.now)() / 60_000);
    if (minute !== log.minute) {
      log.minute = minute;
      log.written = 0;
    }
    if (log.written >= FAILURE_LOG_PER_MINUTE) {
      log.suppressed++;
      return;
    }
    log.written++;
    const more = log.suppressed > 0 ? ` (and ${log.suppressed} more not logged)` : '';
    log.suppressed = 0;
    this.#o.log(`mTLS ${direction} handshake refused (${reason}) ${where}: ${handshakeDetail(err)}${more}`);
  }
}

function fromOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return socket.remoteAddress !== undefined ? `from ${socket.remoteAddress}:${socket.remotePort}` : 'from a client';
}
