// The limits a proxy holds every client and peer to: sizes, counts and times. Every
// one exists, has a default chosen after Envoy's and nginx's (cited per field), and
// can be changed in the Mesh file (`spec.proxyLimits`), which reaches each proxy in its
// snapshot. A listener reads `limits.current` when a connection arrives, so a change
// applies to new connections and never cuts one in progress.
import { TrellisError } from '../../errors.js';

/** The limits in force on a proxy's listeners. */
export interface ProxyLimits {
  /** Largest HTTP/1.1 request head (request line and headers); over it, 431 and close. */
  readonly maxRequestHeadBytes: number;
  /**
   * Longest wait from a request's first byte to the end of its head; then 408 and
   * close. nginx's client_header_timeout is 60 s; Envoy's request_headers_timeout is off
   * by default. 30 s: a human typing a request by hand still makes it, slow-header
   * attacks hold a connection half as long as nginx lets them.
   */
  readonly requestHeaderTimeoutMs: number;
  /** A connection with no request in progress is closed after this long (HTTP/1.1 and HTTP/2). */
  readonly idleTimeoutMs: number;
  /** Concurrent streams per HTTP/2 connection (Envoy's max_concurrent_streams for a listener is 2^31-1 but its "edge" guidance is 100). */
  readonly h2MaxConcurrentStreams: number;
  /** Largest HTTP/2 header list (uncompressed, as SETTINGS_MAX_HEADER_LIST_SIZE); over it, 431. */
  readonly h2MaxHeaderListBytes: number;
  /**
   * Open client connections per listener; more are closed as they arrive (and counted).
   * Envoy leaves this to its overload manager, nginx to worker_connections (512 by
   * default, per worker). 10,000: ten times what a local mesh's busiest sidecar holds in
   * the bench, and with an upstream connection each still far under the file limit.
   */
  readonly maxConnectionsPerListener: number;
  /**
   * How long the inbound sidecar's probe of its app (an HTTP/2 preface: does a SETTINGS
   * frame come back?) waits for the app's first bytes. An HTTP/2 server sends SETTINGS
   * as its first frame as soon as it accepts (RFC 9113 §3.4), well under a millisecond
   * on loopback; an HTTP/1.1 server answers the preface with 400 or waits for more. 1 s
   * lets a busy app's event loop stall that long before its silence reads as HTTP/1.1
   * (a wrong answer is re-probed after the first request it fails).
   */
  readonly appProbeTimeoutMs: number;
  /**
   * How long a TCP connection through the proxy waits for its upstream to connect (and
   * finish its TLS handshake) before trying the next endpoint. Envoy's cluster
   * connect_timeout is 5 s by default and Istio sets 10 s; 10 s.
   */
  readonly tcpConnectTimeoutMs: number;
  /** A TCP connection with no bytes either way for this long is closed: Envoy's tcp_proxy idle_timeout default, 1 h. */
  readonly tcpIdleTimeoutMs: number;
  /**
   * /metrics responses the admin server sends at once; more are answered 503 at once
   * (Retry-After: 1). Each holds its exposition (about 300 KB for 1,000 series) until
   * the client has read it, so scrapers that never read would otherwise pile up memory
   * without bound. One Prometheus scrapes a target one request at a time; 8 leaves room
   * for a few Prometheus replicas, `trellis top` and the control plane's stats together.
   */
  readonly maxConcurrentScrapes: number;
  /**
   * How long a /metrics response may take to be sent in full; then its connection is
   * destroyed (a scraper that stopped reading). Prometheus's default scrape_timeout is
   * 10 s, after which it gives up on the scrape anyway; 30 s is three times that, for a
   * scrape_timeout raised to a scrape_interval of 30 s.
   */
  readonly scrapeTimeoutMs: number;
}

/** Defaults (see each field for the reason). */
export const DEFAULT_LIMITS: ProxyLimits = Object.freeze({
  maxRequestHeadBytes: 16 * 1024,
  requestHeaderTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  h2MaxConcurrentStreams: 100,
  h2MaxHeaderListBytes: 16 * 1024,
  maxConnectionsPerListener: 10_000,
  appProbeTimeoutMs: 1000,
  tcpConnectTimeoutMs: 10_000,
  tcpIdleTimeoutMs: 3_600_000,
  maxConcurrentScrapes: 8,
  scrapeTimeoutMs: 30_000,
});

/**
 * The limits in force, shared by a proxy's listeners and swapped in one assignment
 * when a snapshot brings new ones.
 */
export class LimitsRef {
  current: ProxyLimits;
  constructor(initial: ProxyLimits = DEFAULT_LIMITS) {
    this.current = initial;
  }
}

/**
 * Defaults with `overrides` applied (fields absent or undefined keep their default).
 * Throws on a value that is not a positive whole number, so a snapshot carrying one is
 * refused (NACK) rather than turning a limit off.
 */
export function limitsWith(overrides: Partial<ProxyLimits> | undefined): ProxyLimits {
  if (overrides === undefined) return DEFAULT_LIMITS;
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined || !(k in DEFAULT_LIMITS)) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', {
        version: '(proxyLimits)',
        reason: `limit ${k} must be a positive whole number, got ${JSON.stringify(v)}`,
      });
    out[k] = v;
  }
  return Object.freeze(out as unknown as ProxyLimits);
}
