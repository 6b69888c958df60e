// Prometheus metrics of one proxy: golden metrics per source, destination, route and
// status for HTTP, connections and bytes for TCP, and the process's own CPU and memory.
//
// The per-request HTTP series are kept here rather than in prom-client: its labelled
// observe() validates and hashes the labels on every call, which the bench showed as
// several percent of a sidecar's CPU. Here a request costs one map lookup and a few
// additions; the text is rendered only when /metrics is scraped. TCP series and gauges
// use prom-client's registry.
//
// Only prom-client's Registry, Counter and Gauge modules are loaded, not its index
// (src/telemetry/prom-client-parts.ts says why: about 10 MB of a sidecar's memory). The
// few process metrics a proxy needs are collected below instead.
import type { BreakerView, ConnectionErrorReason, EjectionCountView, EndpointView, FailoverView, LimitRefusal, ListenerKind } from '../api/views.js';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { ExpositionBuffer } from './exposition-buffer.js';
import * as client from './prom-client-parts.js';
import type { Counter, Gauge } from './prom-client-parts.js';

export type Direction = 'inbound' | 'outbound';

/** Client connections of one listener, for {@link ProxyMetrics.watchConnections}. */
export interface ListenerConnections {
  /** The proxy's own name of the listener (`inbound`, `outbound:<service>`, `http-proxy`). */
  readonly listener: string;
  readonly accepted: number;
  readonly active: number;
}

/** Connections of one upstream pool, for {@link ProxyMetrics.watchConnections}. */
export interface PoolConnections {
  readonly pool: 'peers' | 'app';
  readonly active: number;
  readonly idle: number;
}

/** ` # {trace_id="…"} value timestamp` after a bucket's count, or '' without an exemplar. */
function exemplarText(e: Exemplar | undefined): string {
  return e === undefined ? '' : ` # {trace_id="${e.traceId}"} ${e.value} ${e.at.toFixed(3)}`;
}

/**
 * Latency buckets in seconds: fine-grained below 10 ms, where a proxy's own cost lives,
 * and at the latency limits people give a canary (`--max-p99 200ms`): a limit on a
 * bucket bound is judged exactly, one inside a bucket only by interpolation.
 */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10];

interface HttpSeries {
  /** Rendered label pairs, e.g. `direction="outbound",source="web"`. */
  readonly labels: string;
  count: number;
  sum: number;
  /** Non-cumulative bucket counts, one per bound plus +Inf. */
  readonly buckets: Float64Array;
  /**
   * The latest sampled request per bucket, as an OpenMetrics exemplar (its trace id);
   * made at the first sampled request of the series, so unsampled traffic allocates nothing.
   */
  exemplars: (Exemplar | undefined)[] | undefined;
  /**
   * The series' rendered lines as of `count` observations: a scrape re-renders only the
   * series that saw a request since the last one (every observation adds to `count`, and
   * nothing else changes a series), so a proxy with many quiet routes does not rebuild
   * thousands of bucket lines per scrape. One per form: OpenMetrics carries exemplars.
   */
  text: Rendered | undefined;
  openMetrics: Rendered | undefined;
}

/** A series' exposition lines, valid while its count is still `count`. */
interface Rendered {
  readonly count: number;
  /** The `trellis_http_requests_total` sample line. */
  readonly counter: string;
  /** The latency histogram's bucket, sum and count lines. */
  readonly histogram: string;
}

/** The `le` label of each bucket bound, as the exposition writes it. */
const LE = [...LATENCY_BUCKETS.map(String), '+Inf'];

/** One HTTP series' lines (see {@link HttpSeries.text}). */
function renderSeries(s: HttpSeries, openMetrics: boolean): Rendered {
  const ex = openMetrics ? s.exemplars : undefined;
  let histogram = '';
  let cumulative = 0;
  for (let i = 0; i < LE.length; i++) {
    cumulative += s.buckets[i]!;
    histogram += `trellis_http_request_duration_seconds_bucket{le="${LE[i]}",${s.labels}} ${cumulative}${exemplarText(ex?.[i])}\n`;
  }
  histogram += `trellis_http_request_duration_seconds_sum{${s.labels}} ${s.sum}\n`;
  histogram += `trellis_http_request_duration_seconds_count{${s.labels}} ${s.count}\n`;
  return { count: s.count, counter: `trellis_http_requests_total{${s.labels}} ${s.count}\n`, histogram };
}

/** An OpenMetrics exemplar: a trace id, the observed value, and when (unix seconds). */
interface Exemplar {
  traceId: string;
  value: number;
  at: number;
}

/** The content type of OpenMetrics text, the only exposition that carries exemplars. */
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** Whether a scrape's Accept header asks for OpenMetrics (Prometheus sends it first when it can read it). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return accept?.includes('application/openmetrics-text') === true;
}

/**
 * prom-client's Prometheus text in OpenMetrics form: a counter family is named without
 * `_total` in its HELP and TYPE lines (its samples keep it), and no blank lines. Every
 * counter here ends in `_total`, as Prometheus naming asks. (prom-client's own
 * OpenMetrics mode is a registry-wide switch that renames counters in place, so one
 * registry could not serve both forms to concurrent scrapes.)
 */
export function toOpenMetrics(text: string): string {
  let out = '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const rest = line.slice(7);
      const sp = rest.indexOf(' ');
      const name = rest.slice(0, sp);
      if (name.endsWith('_total') && (line.startsWith('# HELP ') ? text.includes(`# TYPE ${name} counter`) : rest.endsWith(' counter'))) {
        out += `${line.slice(0, 7)}${name.slice(0, -6)}${rest.slice(sp)}\n`;
        continue;
      }
    }
    out += `${line}\n`;
  }
  return out;
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** The labels of one request, known before its status. */
export interface HttpLabels {
  readonly direction: Direction;
  readonly source: string;
  readonly destination: string;
  readonly destinationVersion: string;
  readonly route: string;
}

/**
 * The golden metrics' success rule: a request failed when it got no response (status
 * 0), a 5xx, or, for a gRPC call, any grpc-status but 0 (OK) — gRPC answers errors
 * with HTTP 200, as Linkerd classifies them. Anything reading `trellis_http_requests_total`
 * for a success rate (canary, top) should use this rule on `status` and `grpc_status`.
 */
export function requestFailed(status: number, grpcStatus: string): boolean {
  // `!(status < 500)` also fails a status="other" series (NaN once parsed): an answer outside 100-599.
  return status === 0 || !(status < 500) || (grpcStatus !== '' && grpcStatus !== '0');
}

/** The one label value of every out-of-range status and unknown grpc-status: bounded, whatever a peer sends. */
export const OTHER_LABEL = 'other';

/**
 * The `status` label of a response status: 0 (no response) and 100-599 as themselves,
 * anything else an app or peer answered (an HTTP/1.1 status may be 100-999) as
 * {@link OTHER_LABEL}, so statuses add at most 501 series per destination and route.
 */
function statusKey(status: number): number | string {
  return status === 0 || (status >= 100 && status <= 599 && Number.isInteger(status)) ? status : OTHER_LABEL;
}

/** gRPC's 17 status codes (grpc/doc/statuscodes.md), as they appear in a grpc-status header. */
const GRPC_CODES: ReadonlySet<string> = new Set(Array.from({ length: 17 }, (_, i) => String(i)));

/**
 * The `grpc_status` label (and access-log field) of a call's grpc-status: one of gRPC's
 * 17 codes, else {@link OTHER_LABEL}. The value is whatever the app put in a header or
 * trailer; '' (not a gRPC call) stays ''.
 */
export function grpcStatusLabel(grpcStatus: string): string {
  return grpcStatus === '' || GRPC_CODES.has(grpcStatus) ? grpcStatus : OTHER_LABEL;
}

/** The next level of a nested index, made on first use. */
function level(m: Map<unknown, unknown>, key: unknown): Map<unknown, unknown> {
  let next = m.get(key) as Map<unknown, unknown> | undefined;
  if (next === undefined) m.set(key, (next = new Map()));
  return next;
}

export class ProxyMetrics {
  readonly registry = new client.Registry();
  readonly #defaultLabels: string;
  readonly #tcpConnections: Counter;
  readonly #tcpActive: Gauge;
  readonly #tcpBytes: Counter;
  readonly #tcpFailed: Counter;
  readonly #tcpIdle: Counter;
  readonly #configVersion: Gauge;
  readonly #configRejected: Counter;
  /** When the snapshot in force was applied (ms since the epoch), for its age at scrape time. */
  #configAppliedAt: number | undefined;
  readonly controlConnected: Gauge;
  /** Every HTTP series, in the order first seen. */
  readonly #http: HttpSeries[] = [];
  /**
   * The series by label value, one Map level per label (direction, source, destination,
   * version, route, status, grpc_status). The values are mostly strings from the
   * snapshot, whose hashes V8 keeps, so finding a series builds no string per request.
   */
  readonly #index = new Map<unknown, unknown>();
  // Resilience events are rare next to requests, so prom-client's labelled counters do.
  readonly #retries: Counter;
  readonly #budgetExhausted: Counter;
  readonly #timeouts: Counter;
  readonly #faults: Counter;
  // HTTP/1.1 upgrades that became byte tunnels, and requests refused before routing.
  readonly #tunnels: Counter;
  readonly #tunnelsActive: Gauge;
  readonly #tunnelBytes: Counter;
  readonly #tunnelSeconds: Counter;
  readonly #requestsRefused: Counter;
  readonly #refused: Counter;
  readonly #connectionErrors: Counter;
  readonly #limitRefusals: Counter;
  // mTLS: handshakes refused by reason, and connections by how they were secured (per connection, never per request).
  readonly #tlsFailures: Counter;
  readonly #tlsConnections: Counter;
  /** Where scrapes write their exposition, made at the first. */
  #out: ExpositionBuffer | undefined;

  constructor(proxy: { service: string; id: string }) {
    this.registry.setDefaultLabels({ proxy_service: proxy.service, proxy_id: proxy.id });
    registerProcessMetrics(this.registry);
    this.#defaultLabels = `proxy_service="${escapeLabel(proxy.service)}",proxy_id="${escapeLabel(proxy.id)}"`;
    // destination_version is the endpoint's, from the snapshot (inbound: this proxy's own).
    const tcpLabels = ['direction', 'source', 'destination', 'destination_version'];
    this.#tcpConnections = new client.Counter({
      name: 'trellis_tcp_connections_total',
      help: 'TCP connections proxied.',
      labelNames: tcpLabels,
      registers: [this.registry],
    });
    this.#tcpActive = new client.Gauge({
      name: 'trellis_tcp_connections_active',
      help: 'TCP connections open now.',
      labelNames: tcpLabels,
      registers: [this.registry],
    });
    this.#tcpFailed = new client.Counter({
      name: 'trellis_tcp_connect_failures_total',
      help: 'TCP connections through the proxy closed before any upstream took them; reason: connect (refused or unreachable), timeout (tcpConnectTimeout), tls (the upstream handshake failed), no-endpoints.',
      labelNames: ['direction', 'source', 'destination', 'reason'],
      registers: [this.registry],
    });
    // Envoy's tcp_proxy counts these as idle_timeout.
    this.#tcpIdle = new client.Counter({
      name: 'trellis_tcp_idle_timeouts_total',
      help: 'TCP connections through the proxy closed because no byte went either way for tcpIdleTimeout.',
      labelNames: ['direction', 'source', 'destination'],
      registers: [this.registry],
    });
    this.#tcpBytes = new client.Counter({
      name: 'trellis_tcp_bytes_total',
      help: 'Bytes proxied over TCP; flow is "sent" (towards the destination) or "received".',
      labelNames: [...tcpLabels, 'flow'],
      registers: [this.registry],
    });
    this.#configVersion = new client.Gauge({
      name: 'trellis_proxy_config_version',
      help: 'Version of the snapshot in force (0 before the first).',
      registers: [this.registry],
    });
    this.#configVersion.set(0);
    this.#configRejected = new client.Counter({
      name: 'trellis_proxy_config_rejected_total',
      help: 'Snapshots this proxy refused (NACK), keeping the one in force.',
      registers: [this.registry],
    });
    this.controlConnected = new client.Gauge({
      name: 'trellis_proxy_control_connected',
      help: '1 while the proxy is connected to the control plane.',
      registers: [this.registry],
    });
    this.#retries = new client.Counter({
      name: 'trellis_http_retries_total',
      help: 'Retries sent, by destination, route and reason (the status code retried, reset or timeout).',
      labelNames: ['destination', 'route', 'reason'],
      registers: [this.registry],
    });
    this.#budgetExhausted = new client.Counter({
      name: 'trellis_http_retry_budget_exhausted_total',
      help: "Retries not sent because the destination's retry budget was spent.",
      labelNames: ['destination', 'route'],
      registers: [this.registry],
    });
    this.#timeouts = new client.Counter({
      name: 'trellis_http_timeouts_total',
      help: 'Requests answered 504 by a timeout: timeout="request" (the route\'s timeouts.request) or "attempt" (timeouts.backendRequest, or the default response timeout).',
      labelNames: ['destination', 'route', 'timeout'],
      registers: [this.registry],
    });
    this.#faults = new client.Counter({
      name: 'trellis_http_faults_total',
      help: 'Faults injected by FaultInjection policies, by destination, route and fault (delay or abort).',
      labelNames: ['destination', 'route', 'fault'],
      registers: [this.registry],
    });
    // `protocol` is one the destination service accepts (its Mesh upgrades), never a client's spelling.
    const tunnelLabels = ['direction', 'source', 'destination', 'protocol'];
    this.#tunnels = new client.Counter({
      name: 'trellis_http_tunnels_total',
      help: 'HTTP/1.1 upgrades that became byte tunnels (101 Switching Protocols), by the protocol switched to.',
      labelNames: tunnelLabels,
      registers: [this.registry],
    });
    this.#tunnelsActive = new client.Gauge({
      name: 'trellis_http_tunnels_active',
      help: 'Byte tunnels open now.',
      labelNames: tunnelLabels,
      registers: [this.registry],
    });
    this.#tunnelBytes = new client.Counter({
      name: 'trellis_http_tunnel_bytes_total',
      help: 'Bytes through closed tunnels; flow is "sent" (towards the destination) or "received".',
      labelNames: [...tunnelLabels, 'flow'],
      registers: [this.registry],
    });
    this.#tunnelSeconds = new client.Counter({
      name: 'trellis_http_tunnel_seconds_total',
      help: 'Time closed tunnels were open, summed.',
      labelNames: tunnelLabels,
      registers: [this.registry],
    });
    this.#requestsRefused = new client.Counter({
      name: 'trellis_http_requests_refused_total',
      help: 'HTTP/1.1 requests answered and closed before they could be routed, by listener direction and error (bad-request, head-too-large, header-timeout).',
      labelNames: ['direction', 'error'],
      registers: [this.registry],
    });
    this.#refused = new client.Counter({
      name: 'trellis_proxy_connections_refused_total',
      help: 'Client connections a listener closed as they arrived: reason="max-connections" (proxyLimits.maxConnectionsPerListener) or "accept-error" (the system refused, e.g. out of file descriptors).',
      labelNames: ['listener', 'reason'],
      registers: [this.registry],
    });
    this.#connectionErrors = new client.Counter({
      name: 'trellis_proxy_connection_errors_total',
      help: 'Client connections (or HTTP/2 streams) ended by an error in handling them, by listener and reason (accept, http1, h2-session, h2-stream, h2-protocol, tcp); the proxy serves on.',
      labelNames: ['listener', 'reason'],
      registers: [this.registry],
    });
    this.#limitRefusals = new client.Counter({
      name: 'trellis_proxy_limit_refusals_total',
      help: 'Requests or streams refused by a proxy limit, by listener and limit (h2-streams: refused HTTP/2 streams, counted when a later stream of the connection arrives; h2-header-list: answered 431).',
      labelNames: ['listener', 'limit'],
      registers: [this.registry],
    });
    this.#tlsFailures = new client.Counter({
      name: 'trellis_tls_handshake_failures_total',
      help: 'mTLS handshakes refused, by direction (inbound: a caller; outbound: a peer sidecar) and reason (plaintext, expired, not-yet-valid, untrusted, wrong-trust-domain, wrong-identity, no-certificate, no-identity, protocol).',
      labelNames: ['direction', 'reason'],
      registers: [this.registry],
    });
    this.#tlsConnections = new client.Counter({
      name: 'trellis_tls_connections_total',
      help: "Connections between sidecars by direction, the inbound listener's mTLS mode (outbound: auto) and how they were secured (mtls or plaintext).",
      labelNames: ['direction', 'mode', 'security'],
      registers: [this.registry],
    });
  }

  /** A snapshot was applied at `atMs` (ms since the epoch). */
  configApplied(version: number, atMs: number): void {
    this.#configVersion.set(version);
    this.#configAppliedAt = atMs;
  }

  /** A snapshot was refused (NACK). */
  configRejected(): void {
    this.#configRejected.inc();
  }

  /**
   * Adds the proxy's own connection series, read from `state` at each scrape: client
   * connections per listener (accepted, open now), and the connection pools' open
   * connections, busy or idle (pool "peers": to other sidecars; "app": to this proxy's app).
   */
  watchConnections(state: { listeners(): readonly ListenerConnections[]; pools(): readonly PoolConnections[] }): void {
    new client.Counter({
      name: 'trellis_proxy_connections_accepted_total',
      help: 'Client connections a listener accepted (those refused as they arrived are in trellis_proxy_connections_refused_total).',
      labelNames: ['listener'],
      registers: [this.registry],
      collect(this: Counter) {
        this.reset();
        for (const l of state.listeners()) this.labels(l.listener).inc(l.accepted);
      },
    });
    new client.Gauge({
      name: 'trellis_proxy_connections_active',
      help: 'Client connections open now, per listener.',
      labelNames: ['listener'],
      registers: [this.registry],
      collect(this: Gauge) {
        this.reset();
        for (const l of state.listeners()) this.labels(l.listener).set(l.active);
      },
    });
    new client.Gauge({
      name: 'trellis_proxy_pool_connections',
      help: 'Upstream connections a pool holds now, by pool (peers: to other sidecars; app: to the local app) and state (active: carrying a request; idle: kept for reuse).',
      labelNames: ['pool', 'state'],
      registers: [this.registry],
      collect(this: Gauge) {
        this.reset();
        for (const p of state.pools()) {
          this.labels(p.pool, 'active').set(p.active);
          this.labels(p.pool, 'idle').set(p.idle);
        }
      },
    });
  }

  /** A connection or stream was ended by an error in handling it (listener-context.ts). */
  connectionError(listener: ListenerKind, reason: ConnectionErrorReason): void {
    this.#connectionErrors.labels(listener, reason).inc();
  }

  /** An mTLS handshake was refused; `reason` is one of a fixed set (src/proxy/tls/handshake-failure.ts). */
  tlsHandshakeFailed(direction: Direction, reason: string): void {
    this.#tlsFailures.labels(direction, reason).inc();
  }

  /** A connection between sidecars was set up: `mode` the inbound listener's (outbound: `auto`), `security` mtls or plaintext. */
  tlsConnection(direction: Direction, mode: string, security: 'mtls' | 'plaintext'): void {
    this.#tlsConnections.labels(direction, mode, security).inc();
  }

  /** `n` requests or streams were refused by a limit (listener-context.ts). */
  limitRefused(listener: ListenerKind, limit: LimitRefusal, n = 1): void {
    this.#limitRefusals.labels(listener, limit).inc(n);
  }

  /** An upgrade became a tunnel. */
  tunnelOpened(direction: Direction, source: string, destination: string, protocol: string): void {
    this.#tunnels.labels(direction, source, destination, protocol).inc();
    this.#tunnelsActive.labels(direction, source, destination, protocol).inc();
  }

  /** A tunnel closed after `seconds`, with its bytes each way. */
  tunnelClosed(direction: Direction, source: string, destination: string, protocol: string, sent: number, received: number, seconds: number): void {
    this.#tunnelsActive.labels(direction, source, destination, protocol).dec();
    this.#tunnelBytes.labels(direction, source, destination, protocol, 'sent').inc(sent);
    this.#tunnelBytes.labels(direction, source, destination, protocol, 'received').inc(received);
    this.#tunnelSeconds.labels(direction, source, destination, protocol).inc(seconds);
  }

  /** A request was refused before it became an exchange; `error` is an error-table token. */
  requestRefused(direction: Direction, error: string): void {
    this.#requestsRefused.labels(direction, error).inc();
  }

  /**
   * A listener closed a connection as it arrived, or (a gateway's HTTPS port) before any
   * HTTP: an SNI no listener takes, a failed handshake, plain HTTP. `listener` is the
   * proxy's own listener name.
   */
  connectionRefused(listener: string, reason: 'max-connections' | 'accept-error' | 'unknown-sni' | 'handshake' | 'plain-http'): void {
    this.#refused.inc({ listener, reason });
  }

  /** A retry was sent (retry.ts). */
  retried(destination: string, route: string, reason: string): void {
    this.#retries.labels(destination, route, reason).inc();
  }

  /** A retry was not sent: the budget was spent (retry.ts). */
  budgetExhausted(destination: string, route: string): void {
    this.#budgetExhausted.labels(destination, route).inc();
  }

  /** A request ended in a 504 timeout. */
  timedOut(destination: string, route: string, timeout: 'request' | 'attempt'): void {
    this.#timeouts.labels(destination, route, timeout).inc();
  }

  /** A fault was injected (fault.ts). */
  injected(destination: string, route: string, fault: 'delay' | 'abort'): void {
    this.#faults.labels(destination, route, fault).inc();
  }

  /**
   * Records one finished HTTP exchange. `grpcStatus` is the call's grpc-status for a
   * gRPC call ('' otherwise): such series carry a `grpc_status` label, so a gRPC error
   * answered with HTTP 200 shows as the failure it is (see {@link requestFailed}).
   * Both statuses come from the app, so both are bounded here ({@link OTHER_LABEL});
   * every other label is the caller's to bound (layers.ts takes them from the snapshot).
   * `l` is read here and kept nowhere: the telemetry layer refills one object per request.
   */
  observeHttp(l: HttpLabels, httpStatus: number, seconds: number, rawGrpcStatus = '', traceId?: string): void {
    // status and grpc_status decide `classification`, so it needs no index level of its own.
    const status = statusKey(httpStatus);
    const grpcStatus = grpcStatusLabel(rawGrpcStatus);
    let m = this.#index;
    m = level(m, l.direction);
    m = level(m, l.source);
    m = level(m, l.destination);
    m = level(m, l.destinationVersion);
    m = level(m, l.route);
    m = level(m, status);
    let s = m.get(grpcStatus) as HttpSeries | undefined;
    if (s === undefined) {
      const labels =
        `direction="${l.direction}",source="${escapeLabel(l.source)}",destination="${escapeLabel(l.destination)}",` +
        `destination_version="${escapeLabel(l.destinationVersion)}",route="${escapeLabel(l.route)}",status="${status}",` +
        (grpcStatus === '' ? '' : `grpc_status="${escapeLabel(grpcStatus)}",`) +
        `classification="${requestFailed(httpStatus, grpcStatus) ? 'failure' : 'success'}",` +
        this.#defaultLabels;
      s = { labels, count: 0, sum: 0, buckets: new Float64Array(LATENCY_BUCKETS.length + 1), exemplars: undefined, text: undefined, openMetrics: undefined };
      m.set(grpcStatus, s);
      this.#http.push(s);
    }
    s.count++;
    s.sum += seconds;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]!) b++;
    s.buckets[b]!++;
    // A sampled request's trace id becomes its bucket's exemplar (the latest one wins, as in client_golang).
    if (traceId !== undefined) {
      // Updated in place once the bucket has one: at 100% sampling this runs for every request.
      const e = (s.exemplars ??= new Array(LATENCY_BUCKETS.length + 1))[b];
      if (e === undefined) s.exemplars[b] = { traceId, value: seconds, at: Date.now() / 1000 };
      else {
        e.traceId = traceId;
        e.value = seconds;
        e.at = Date.now() / 1000;
      }
    }
  }

  /**
   * The whole exposition as bytes, what /metrics sends: the HTTP series, the snapshot's
   * time, then prom-client's registry. Written into a buffer kept between scrapes, never
   * built as one string (exposition-buffer.ts says why). The bytes are lent: hand them
   * to {@link releaseExposition} once sent, and the next scrape writes into them again.
   */
  async exposition(openMetrics = false): Promise<Buffer> {
    // The registry first: it may await its collectors, and the buffer is filled in one go.
    const registry = await this.registry.metrics();
    const out = (this.#out ??= new ExpositionBuffer());
    this.#writeHttp(out, openMetrics);
    out.write(this.#configText());
    if (openMetrics) {
      out.write(toOpenMetrics(registry));
      out.write('# EOF\n');
    } else out.write(registry);
    return out.take();
  }

  /** Gives back the bytes {@link exposition} lent, once the response has sent them. */
  releaseExposition(bytes: Buffer): void {
    this.#out?.release(bytes);
  }

  /** {@link exposition} as text. */
  async text(openMetrics = false): Promise<string> {
    const bytes = await this.exposition(openMetrics);
    const text = bytes.toString('utf8');
    this.releaseExposition(bytes);
    return text;
  }

  /**
   * When the snapshot in force was applied: a timestamp, as Prometheus advises (`time() - x`
   * is the age), and the age itself for readers without a clock of their own. Written
   * here, not with prom-client, because before the first snapshot there is no value, and
   * a label-less prom-client gauge always shows one (0: a time long past).
   */
  #configText(): string {
    const at = this.#configAppliedAt;
    const samples = (name: string, value: number): string => (at === undefined ? '' : `${name}{${this.#defaultLabels}} ${value}\n`);
    return (
      '# HELP trellis_proxy_config_last_applied_timestamp_seconds When the snapshot in force was applied, in seconds since the epoch (absent before the first).\n' +
      '# TYPE trellis_proxy_config_last_applied_timestamp_seconds gauge\n' +
      samples('trellis_proxy_config_last_applied_timestamp_seconds', (at ?? 0) / 1000) +
      '# HELP trellis_proxy_config_age_seconds Seconds since the snapshot in force was applied (absent before the first).\n' +
      '# TYPE trellis_proxy_config_age_seconds gauge\n' +
      samples('trellis_proxy_config_age_seconds', Math.max(0, (Date.now() - (at ?? 0)) / 1000))
    );
  }

  /**
   * Prometheus text of the HTTP request counter and latency histogram; with
   * `openMetrics`, OpenMetrics text whose buckets carry exemplars (trace ids of sampled requests).
   */
  httpText(openMetrics = false): string {
    const out = new ExpositionBuffer();
    this.#writeHttp(out, openMetrics);
    return out.take().toString('utf8');
  }

  #writeHttp(out: ExpositionBuffer, openMetrics: boolean): void {
    const series = this.#http;
    const family = openMetrics ? 'trellis_http_requests' : 'trellis_http_requests_total';
    out.write(
      `# HELP ${family} HTTP requests handled, by direction, source, destination, destination version, route and response status (and grpc_status for gRPC calls); classification is "failure" for no response, a 5xx or a gRPC status other than 0.\n` +
        `# TYPE ${family} counter\n`,
    );
    const rendered: Rendered[] = new Array(series.length);
    for (let i = 0; i < series.length; i++) {
      const s = series[i]!;
      let r = openMetrics ? s.openMetrics : s.text;
      if (r === undefined || r.count !== s.count) {
        r = renderSeries(s, openMetrics);
        if (openMetrics) s.openMetrics = r;
        else s.text = r;
      }
      rendered[i] = r;
      out.write(r.counter);
    }
    out.write(
      '# HELP trellis_http_request_duration_seconds Time from the request head arriving to the response being fully sent.\n' +
        '# TYPE trellis_http_request_duration_seconds histogram\n',
    );
    for (const r of rendered) out.write(r.histogram);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Adds `trellis_proxy_app_cpu_seconds_total{pid}`: the CPU seconds of the process
   * listening on the app's port, so a bench can tell a busy app from a busy sidecar.
   * Linux only (read from /proc); elsewhere, or while no process listens, no series.
   */
  watchAppCpu(appPort: number): void {
    if (process.platform !== 'linux') return;
    const owner = new PortOwner(appPort);
    new client.Counter({
      name: 'trellis_proxy_app_cpu_seconds_total',
      help: 'CPU seconds (user + system) of the app process listening on the app port (Linux).',
      labelNames: ['pid'],
      registers: [this.registry],
      collect(this: Counter) {
        this.reset();
        const c = owner.cpu();
        if (c) this.labels(String(c.pid)).inc(c.seconds);
      },
    });
  }

  /** Adds `trellis_access_log_dropped_lines_total`: lines the access log could not write (access-log.ts), read at scrape time. */
  /**
   * `trellis_proxy_certificate_expiry_seconds`: seconds until the proxy's workload
   * certificate expires (negative once it has), read at each scrape; absent before the first.
   */
  watchCertificate(notAfter: () => number | undefined, now: () => number): void {
    new client.Gauge({
      name: 'trellis_proxy_certificate_expiry_seconds',
      help: "Seconds until this proxy's workload certificate expires (renewed at about two thirds of its life); absent before the first certificate.",
      registers: [this.registry],
      collect(this: Gauge) {
        this.reset();
        const at = notAfter();
        if (at !== undefined) this.set(Math.round((at - now()) / 1000));
      },
    });
  }

  /** The proxy's taps (proxy/tap/tap-hub.ts): open now, refused at the limit, events dropped for slow readers, readers let go. */
  watchTap(tap: { counts(): { active: number; refused: number; dropped: number; slowReaders: number } }): void {
    this.#readGauge('trellis_proxy_taps_active', 'Taps streaming this proxy requests now (trellis tap).', () => tap.counts().active);
    this.#readCounter('trellis_proxy_taps_refused_total', 'Taps refused because the proxy streamed its maximum number of taps.', () => tap.counts().refused);
    this.#readCounter(
      'trellis_proxy_tap_events_dropped_total',
      'Tap events dropped because their reader was behind (its queue full).',
      () => tap.counts().dropped,
    );
    this.#readCounter('trellis_proxy_tap_slow_readers_total', 'Tap readers disconnected because they stayed behind.', () => tap.counts().slowReaders);
  }

  /** A gauge without labels whose value `read` gives at each scrape. */
  #readGauge(name: string, help: string, read: () => number): void {
    new client.Gauge({
      name,
      help,
      registers: [this.registry],
      collect(this: Gauge) {
        this.set(read());
      },
    });
  }

  /** A counter without labels whose total so far `read` gives at each scrape (the count is kept where it happens). */
  #readCounter(name: string, help: string, read: () => number): void {
    new client.Counter({
      name,
      help,
      registers: [this.registry],
      collect(this: Counter) {
        this.reset();
        this.inc(read());
      },
    });
  }

  /** The kubelet's probes of the app through /app-health (proxy/app-health.ts): in flight now, and refused at the cap. */
  watchAppProbes(gate: { counts(): { active: number; refused: number } }): void {
    this.#readGauge(
      'trellis_proxy_app_probes_active',
      "Probes of the app this proxy runs now for /app-health (the kubelet's probes).",
      () => gate.counts().active,
    );
    this.#readCounter(
      'trellis_proxy_app_probes_refused_total',
      'Requests to /app-health answered 503 at once because the proxy ran its maximum of app probes (--app-probe-concurrency).',
      () => gate.counts().refused,
    );
  }

  /** The admin server's own /metrics responses (proxy/scrape-gate.ts): being sent now, refused at the cap, cut at the timeout. */
  watchScrapes(gate: { counts(): { active: number; refused: number; timedOut: number } }): void {
    this.#readGauge('trellis_proxy_scrapes_active', 'Responses to /metrics this proxy is sending now (this one included).', () => gate.counts().active);
    this.#readCounter(
      'trellis_proxy_scrapes_refused_total',
      'Requests to /metrics answered 503 at once because the proxy was sending its maximum of /metrics responses (proxyLimits.maxConcurrentScrapes).',
      () => gate.counts().refused,
    );
    this.#readCounter(
      'trellis_proxy_scrapes_timed_out_total',
      'Responses to /metrics whose connection was closed because they were not sent in full within proxyLimits.scrapeTimeout (a client that stopped reading).',
      () => gate.counts().timedOut,
    );
  }

  /** Adds the span exporter's series, read from `tracer` at each scrape (src/telemetry/tracing/tracer.ts). */
  watchTracing(tracer: { stats(): { exported: number; dropped: { queue_full: number; export_failed: number }; queued: number; errorSpans: number } }): void {
    this.#readCounter('trellis_proxy_spans_exported_total', 'Spans the collector accepted.', () => tracer.stats().exported);
    new client.Counter({
      name: 'trellis_proxy_spans_dropped_total',
      help: 'Spans dropped: the export queue was full (the collector slow or down), or the collector did not take a batch.',
      labelNames: ['reason'],
      registers: [this.registry],
      collect(this: Counter) {
        const d = tracer.stats().dropped;
        this.reset();
        this.labels('queue_full').inc(d.queue_full);
        this.labels('export_failed').inc(d.export_failed);
      },
    });
    this.#readCounter(
      'trellis_proxy_spans_error_sampled_total',
      'Spans of failed requests exported although their trace was not sampled (errors are always exported).',
      () => tracer.stats().errorSpans,
    );
    this.#readGauge('trellis_proxy_spans_queued', 'Spans waiting in the export queue.', () => tracer.stats().queued);
  }

  watchAccessLog(log: { readonly dropped: number }): void {
    this.#readCounter(
      'trellis_access_log_dropped_lines_total',
      'Access-log lines dropped because the log could not take them (a write error, or 16 MiB behind).',
      () => log.dropped,
    );
  }

  /**
   * Adds the balancing series, read from `state` at each scrape: per endpoint of each
   * backend its requests in flight and round-trip estimate, per endpoint its ejected
   * state and ejections, per destination its circuit breaker and overflows.
   */
  watchBalancing(state: {
    view(): readonly EndpointView[];
    breakers(): readonly BreakerView[];
    ejections(): readonly EjectionCountView[];
    failovers(): readonly FailoverView[];
  }): void {
    const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge) => void): void => {
      new client.Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect(this: Gauge) {
          this.reset();
          fill(this);
        },
      });
    };
    const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter) => void): void => {
      new client.Counter({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect(this: Counter) {
          this.reset();
          fill(this);
        },
      });
    };
    const byBackend = ['destination', 'backend', 'endpoint'];
    gauge(
      'trellis_endpoint_pending_requests',
      'Requests (or TCP connections) in flight to an endpoint, per backend (load-aware balancers).',
      byBackend,
      (g) => {
        for (const v of state.view()) if (v.pending !== undefined) g.labels(v.service, v.backend, v.id).set(v.pending);
      },
    );
    gauge('trellis_endpoint_ewma_seconds', 'PeakEWMA round-trip estimate of an endpoint, per backend.', byBackend, (g) => {
      for (const v of state.view()) if (v.ewmaMs !== undefined) g.labels(v.service, v.backend, v.id).set(v.ewmaMs / 1000);
    });
    // Ejection is per service: one series per endpoint, not per backend.
    const perEndpoint = (fill: (v: EndpointView) => void): void => {
      const seen = new Set<string>();
      for (const v of state.view()) {
        const key = `${v.service}\0${v.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        fill(v);
      }
    };
    gauge('trellis_endpoint_ejected', '1 while outlier detection keeps an endpoint out of rotation.', ['destination', 'endpoint'], (g) => {
      perEndpoint((v) => g.labels(v.service, v.id).set(v.ejected ? 1 : 0));
    });
    counter('trellis_endpoint_ejections_total', 'Times outlier detection ejected an endpoint.', ['destination', 'endpoint'], (c) => {
      perEndpoint((v) => c.labels(v.service, v.id).inc(v.ejections));
    });
    // Per version, not per endpoint: what a canary of a version is judged on (canary/judge.ts).
    // Every label comes from the snapshot (destination, version) or a fixed set (reason).
    counter(
      'trellis_outlier_ejections_total',
      "Times outlier detection ejected an endpoint, by destination, the endpoint's version and the reason.",
      ['destination', 'destination_version', 'reason'],
      (c) => {
        for (const e of state.ejections()) c.labels(e.service, e.version, e.reason).inc(e.count);
      },
    );
    counter(
      'trellis_http_failovers_total',
      'Requests for a backend none of whose endpoints could take them (ejected, refusing or tried), sent to its failover backend (for a version: the whole service).',
      ['destination', 'backend', 'failover_backend'],
      (c) => {
        for (const f of state.failovers()) c.labels(f.service, f.backend, f.to).inc(f.count);
      },
    );
    gauge('trellis_circuit_breaker_open', "1 while a limit of the destination's circuit breaker is reached.", ['destination'], (g) => {
      for (const b of state.breakers()) g.labels(b.service).set(b.open ? 1 : 0);
    });
    counter(
      'trellis_circuit_breaker_overflows_total',
      'Requests refused with 503 overflow (limit="maxRequests" or "maxPendingRequests"), and retries not made (limit="maxRetries").',
      ['destination', 'limit'],
      (c) => {
        for (const b of state.breakers()) {
          c.labels(b.service, 'maxPendingRequests').inc(b.pendingOverflows);
          c.labels(b.service, 'maxRequests').inc(b.requestOverflows);
          c.labels(b.service, 'maxRetries').inc(b.retryOverflows);
        }
      },
    );
  }

  tcpOpened(direction: Direction, source: string, destination: string, version: string): void {
    this.#tcpConnections.labels(direction, source, destination, version).inc();
    this.#tcpActive.labels(direction, source, destination, version).inc();
  }

  tcpClosed(direction: Direction, source: string, destination: string, version: string, sent: number, received: number): void {
    this.#tcpActive.labels(direction, source, destination, version).dec();
    this.#tcpBytes.labels(direction, source, destination, version, 'sent').inc(sent);
    this.#tcpBytes.labels(direction, source, destination, version, 'received').inc(received);
  }

  /** A TCP client closed because no upstream could be reached (`reason` from a fixed set, never an error's text). */
  tcpConnectFailed(direction: Direction, source: string, destination: string, reason: TcpConnectFailure): void {
    this.#tcpFailed.labels(direction, source, destination, reason).inc();
  }

  /** A TCP connection closed by its idle timeout (it is counted closed by tcpClosed as well). */
  tcpIdleTimeout(direction: Direction, source: string, destination: string): void {
    this.#tcpIdle.labels(direction, source, destination).inc();
  }
}

/** Why a TCP connection found no upstream. */
export type TcpConnectFailure = 'connect' | 'timeout' | 'tls' | 'no-endpoints';

/**
 * The proxy process's own CPU, memory, heap and file descriptors, under the names
 * prom-client's default collectors use (with the `trellis_proxy_` prefix), so
 * dashboards written for them work. Read at scrape time; nothing runs between scrapes.
 */
function registerProcessMetrics(registry: client.Registry): void {
  const registers = [registry];
  const gauge = (name: string, help: string, read: () => number | undefined): void => {
    new client.Gauge({
      name: `trellis_proxy_${name}`,
      help,
      registers,
      collect(this: Gauge) {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  };
  new client.Counter({
    name: 'trellis_proxy_process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
    collect(this: Counter) {
      const u = process.cpuUsage();
      this.reset();
      this.inc((u.user + u.system) / 1e6);
    },
  });
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss());
  gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', () => process.memoryUsage().heapUsed);
  gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', () => process.memoryUsage().heapTotal);
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () =>
    Math.round((Date.now() - process.uptime() * 1000) / 1000),
  );
  if (process.platform === 'linux') {
    gauge('process_open_fds', 'Number of open file descriptors.', () => {
      try {
        return readdirSync('/proc/self/fd').length - 1; // minus the one readdir itself opened
      } catch {
        return undefined;
      }
    });
  }
}

/** USER_HZ: the unit of /proc/<pid>/stat times, 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

/**
 * The process listening on a TCP port, found through /proc: the listening socket's
 * inode in /proc/net/tcp(6), then the process holding `socket:[inode]` among its fds.
 * The fd scan runs only when the port's socket changes (the app restarted).
 */
class PortOwner {
  readonly #portHex: string;
  #inode = '';
  #pid: number | undefined;

  constructor(port: number) {
    this.#portHex = port.toString(16).toUpperCase().padStart(4, '0');
  }

  #listeningInode(): string | undefined {
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = readFileSync(file, 'latin1');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        const f = line.trim().split(/\s+/);
        // sl local_address rem_address st ... inode; st 0A is LISTEN
        if (f[3] === '0A' && f[1]?.endsWith(`:${this.#portHex}`) && f[9] && f[9] !== '0') return f[9];
      }
    }
    return undefined;
  }

  #findPid(inode: string): number | undefined {
    const link = `socket:[${inode}]`;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${d}/fd`);
      } catch {
        continue; // gone, or not ours to read
      }
      for (const fd of fds) {
        try {
          if (readlinkSync(`/proc/${d}/fd/${fd}`) === link) return Number(d);
        } catch {
          // closed meanwhile
        }
      }
    }
    return undefined;
  }

  /** The owner's pid and CPU seconds, or undefined when it cannot be told. */
  cpu(): { pid: number; seconds: number } | undefined {
    try {
      const inode = this.#listeningInode();
      if (inode === undefined) return undefined;
      if (inode !== this.#inode) {
        this.#inode = inode;
        this.#pid = this.#findPid(inode);
      }
      if (this.#pid === undefined) return undefined;
      const stat = readFileSync(`/proc/${this.#pid}/stat`, 'latin1');
      // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]);
      return Number.isFinite(ticks) ? { pid: this.#pid, seconds: ticks / CLOCK_TICKS } : undefined;
    } catch {
      this.#inode = '';
      return undefined;
    }
  }
}
