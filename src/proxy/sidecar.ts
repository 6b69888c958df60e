// A sidecar (or gateway) process: its listeners, the pipelines behind them, the
// snapshot in force, and the admin server. Listeners are opened at start; what each
// does comes from the latest good snapshot, swapped in one assignment.
import { redactSnapshot } from '../api/redact.js';
import { readBody } from '../http-body.js';
import { LogLimiter } from '../log-limiter.js';
import http from 'node:http';
import net from 'node:net';
import type { BackendSnapshot, Endpoint, HostPort, InboundMtls, InstancePort, MtlsMode, PeerMtls, Protocol, ProxyInfo, Snapshot } from '../api/protocol.js';
import { errorBody, TrellisError } from '../errors.js';
import { openAccessLog, type AccessLog, type AccessLogOptions } from '../telemetry/access-log.js';
import { OPENMETRICS_CONTENT_TYPE, ProxyMetrics, wantsOpenMetrics } from '../telemetry/metrics.js';
import { Tracer } from '../telemetry/tracing/tracer.js';
import { listenKey } from '../api/listen-fds.js';
import { checkTracing } from '../telemetry/tracing/settings.js';
import { ControlClient } from './control-client.js';
import { detectProtocol, serveHttp, type H2Server } from './listeners/detect.js';
import type { H2SessionPool } from './h2/forwarder.js';
import type { Http2Server } from 'node:http2';
import { adminRefusal } from './admin-access.js';
import { APP_HEALTH_PREFIX, AppProbeGate, type AppProbe, runAppProbe } from './app-health.js';
import { ScrapeGate } from './scrape-gate.js';
import { peerIdentity } from './identity.js';
import { MeshTls, type VerifiedPeer } from './tls/mesh-tls.js';
import { admitInbound, type InboundDoor } from './listeners/mtls-inbound.js';
import type { WorkloadName } from '../security/spiffe.js';
import { AuthzEngine, NO_AUTHORIZATION } from './authz/engine.js';
import { AuthzMetrics } from './authz/metrics.js';
import { authorizeConnection } from './authz/connection.js';
import { WorkloadIdentity } from './tls/workload-identity.js';
import { credentialHeaders } from '../security/bootstrap-credential.js';
import { CertificateRenewer, type RenewalClock } from './tls/certificate-renewer.js';
import { AuthnMetrics } from './authn/authn-metrics.js';
import { AuthnState } from './authn/authn-state.js';
import { REAL_AUTHN_CLOCK, type AuthnClock } from './authn/jwks-source.js';
import { ConnectionPool, forwarder, PEER_IDLE_TIMEOUT_MS, type SecureFor } from './http1/pool.js';
import { RetryBudget } from './resilience/retry-budget.js';
import {
  compileUpstream,
  eachUpstream,
  pickBackend,
  upgradeList,
  type BackendSource,
  type BudgetSource,
  type CompiledRoute,
  type CompiledUpstream,
} from './routing/router.js';
import { BalancingState } from './balancer/balancing.js';
import { Deadlines, sweepIntervalMs } from './resilience/timeout.js';
import type { AddressedInstance } from './routing/layers.js';
import { gatewayStack, inboundStack, outboundStack, type EdgeParts, type OutboundParts } from './stack/stacks.js';
import { GatewayListeners } from './gateway/gateway-listeners.js';
import { withMappedRedirects } from './gateway/port-map.js';
import { serviceOfBackend, type ServiceOfBackend } from './gateway/edge-destination.js';
import { RateLimitState } from './ratelimit/rate-limit-state.js';
import type { TimerClock } from '../api/timer-clock.js';
import { RateLimitMetrics } from '../telemetry/rate-limit-metrics.js';
import { proxyTcp } from './tcp/tcp-proxy.js';
import { connectionKey, endpointKey } from './balancer/balancer.js';
import { LimitsRef, limitsWith } from './listeners/limits.js';
import { AppHttpVersion, probeAppHttp, refuseHttp1 } from './h2/app-version.js';
import { DEFAULT_UPGRADES } from '../api/protocol.js';
import { DEFAULT_CLUSTER_DOMAIN, DEFAULT_NAMESPACE, serviceHostNames, serviceKey, splitServiceKey } from '../api/names.js';
import { UNKNOWN_SOURCE } from './identity.js';
import { errorSummary, type ConnectionErrorReason, type ListenerContext, type ListenerKind } from './listeners/listener-context.js';
import { TapHub, type TapLimits } from './tap/tap-hub.js';
import { serveTap } from './tap/tap-endpoint.js';
import { explain, parseExplainRequest } from './routing/explain.js';
import { explainInbound, parseInboundExplainRequest } from './authz/explain.js';
import { timingSafeEqual } from 'node:crypto';
import tls from 'node:tls';
import { EgressPolicy } from './egress/egress-policy.js';
import { externalOfTunnelSni, sniAllowed } from './egress/tunnel.js';
import { peekClientHello } from './gateway/client-hello.js';
import { credentialReader } from './credential-file.js';
import { DnsResponder, type DnsLimits } from './dns/dns-responder.js';
import { LoopbackAddresses } from './dns/loopback-addresses.js';
import { meshNames, meshPorts } from './dns/mesh-names.js';

/** HTTP/2 once loaded: the forwarder's and server's modules, the app codecs, and the upstream session pool. */
interface LoadedH2 {
  readonly pool: H2SessionPool;
  readonly parts: typeof import('./h2/forwarder.js') &
    typeof import('./h2/server-stream.js') &
    typeof import('./h2/app-codec.js') &
    typeof import('./h2/to-http1.js');
}

export interface SidecarOptions {
  service: string;
  version: string;
  id: string;
  kind: 'sidecar' | 'gateway';
  control: string;
  token?: string;
  /** The instance's bootstrap credential (`$TRELLIS_CREDENTIAL`): without the right one the control plane refuses the proxy. */
  credential?: string;
  /** `--credential-file`: the join credential read from this file before every connection (a rotated ServiceAccount token); wins over `credential`. */
  credentialFile?: string;
  /** The certificate renewer's clock (tests). */
  identityClock?: RenewalClock;
  /** The clock of JWT checks (exp, nbf) and jwksUri refreshes (tests); absent: the real one. */
  authnClock?: AuthnClock;
  /** The clock of the rate limits' buckets and demand reports (tests: the one the control plane's quotas run on); absent: the real one. */
  rateLimitClock?: TimerClock;
  /** Least time between two jwksUri fetches a token's unknown kid starts (default 30 s; tests shorten it). */
  jwksKidCooldownMs?: number;
  app?: HostPort;
  inbound?: HostPort;
  /**
   * A multi-port service: an inbound listener per service port, each in front of its app
   * port, in the service's order; the first is `app` and `inbound` (which may then be left out).
   */
  ports?: InstancePort[];
  /** `servicePort`: the port of a multi-port service the listener reaches; absent: its first. */
  upstreams: { service: string; listen: HostPort; servicePort?: number }[];
  httpProxy?: HostPort;
  admin: HostPort;
  /**
   * Listening sockets the runner holds across restarts, by the address asked for
   * (`host:port`, src/api/listen-fds.ts): a listener at one of them listens on the inherited
   * descriptor instead of binding, so it takes the connections that queued meanwhile.
   */
  listenFds?: ReadonlyMap<string, number>;
  /** `-` (stdout), `off`, or a file path. */
  accessLog: string;
  /** Query values, rotation (access-log.ts); absent: the defaults. */
  accessLogOptions?: AccessLogOptions;
  log: (line: string) => void;
  /** How long protocol detection waits for a client's first bytes (services with no declared protocol). */
  detectTimeoutMs?: number;
  /**
   * The mesh's admin credential: when set, the admin server's /tap and /explain (what
   * shows requests as they pass) need `Authorization: Bearer <it>`. Absent: open, as the
   * rest of the admin server (loopback only) is today.
   */
  adminToken?: string;
  /** The app's HTTP probes the kubelet sends to /app-health/... on Kubernetes (app-health.ts); absent: none. */
  appProbes?: ReadonlyMap<string, AppProbe>;
  /** App probes in flight at once through /app-health; more are answered 503 (default DEFAULT_APP_PROBE_CONCURRENCY). */
  appProbeConcurrency?: number;
  /** Taps per proxy, a reader's queue, how long a reader may stay behind (tap/tap-hub.ts); absent: the defaults. */
  tapLimits?: Partial<TapLimits>;
  /**
   * An egress gateway (kind 'gateway'): its mutual-TLS listener (STRICT) where sidecars send
   * calls to ExternalServices; each request is routed by its Host, as on the HTTP proxy
   * listener, and leaves with the TLS the ExternalService asks for. Reported as `inbound`.
   */
  egress?: HostPort;
  /** The head sampling coin (tests inject a seeded one); default Math.random. */
  traceRandom?: () => number;
  /**
   * A gateway serving a Gateway resource (kind 'gateway'): where its ports are opened
   * (default 127.0.0.1), and Gateway ports opened at another port (0: a free one).
   */
  gatewayListen?: { host?: string; ports?: ReadonlyMap<number, number> };
  /**
   * `--dns-listen`: a DNS responder (UDP and TCP) that answers mesh service names with a
   * loopback address where this sidecar opens the service's outbound listeners, on first
   * query, and forwards every other name to `upstreams` (dns/dns-responder.ts).
   */
  dns?: { listen: HostPort; upstreams: readonly HostPort[]; limits?: Partial<DnsLimits>; maxServices?: number };
}

/** Mesh services the DNS responder gives an address (and listeners) at most, by default. */
const DNS_MAX_SERVICES = 1024;

/** Largest body `POST /explain` takes. */
const EXPLAIN_BODY_BYTES = 64 * 1024;

/** As Linkerd's: a client that has said nothing by then is taken for a server-first protocol. */
const DETECT_TIMEOUT_MS = 10_000;

/** How long a connection accepted before the first snapshot waits for it. */
const FIRST_SNAPSHOT_WAIT_MS = 10_000;

/**
 * At most this many connection-error log lines per minute; the rest are counted (in
 * the metric, and in one line before the next minute's first; src/log-limiter.ts). A client that finds a way to make every
 * connection fail must not also fill the log.
 */
const CONNECTION_ERROR_LOG_PER_MINUTE = 20;

const REASON_TEXT: Record<ConnectionErrorReason, string> = {
  accept: 'setting up a connection threw',
  http1: 'handling an HTTP/1.1 connection threw',
  'h2-session': 'setting up an HTTP/2 session threw',
  'h2-stream': 'handling an HTTP/2 stream threw; the stream was reset',
  'h2-protocol': 'the client broke HTTP/2 (or went away with an error)',
  tcp: 'connecting a TCP client threw',
};

export class Sidecar {
  readonly #o: SidecarOptions;
  readonly metrics: ProxyMetrics;
  /** Head sampling and span export (src/telemetry/tracing/); off until a snapshot carries `tracing`. */
  readonly tracer: Tracer;
  readonly #accessLog: AccessLog;
  /** The tap point the telemetry layers publish to while someone taps this proxy (`GET /tap`). */
  readonly tap: TapHub;
  /**
   * How a new connection to a peer sidecar's endpoint (`host:port`) is secured, from the
   * snapshot's backends (`#peerMtls`): mutual TLS with this proxy's certificate, expecting
   * the backend's SPIFFE IDs, or plaintext. Asked once per connection, never per request.
   */
  readonly #secureFor: SecureFor = (key, alpn) => {
    const origin = this.#originTls.get(key);
    if (origin !== undefined) return { options: alpn === 'h2' ? origin.h2 : alpn === 'http/1.1' ? origin.h1 : origin.raw, watch: NO_WATCH };
    const peer = this.#peerMtls.get(key);
    if (peer === undefined) return undefined;
    const options = this.tls.connectOptions(key, peer, alpn);
    return options === undefined ? 'mutual TLS needs a workload certificate, and this proxy has none yet' : { options, watch: this.#watchTls };
  };
  readonly #watchTls = (socket: import('node:tls').TLSSocket, key: string): void => this.tls.watchClient(socket, key);
  /**
   * ExternalService endpoints (by connectionKey: `host:port` and the service, since two may
   * share an address) reached with TLS this proxy originates: the SNI,
   * and a context holding the CA bundle, built once per snapshot (not per connection).
   * Node's default checkServerIdentity checks the certificate against the SNI.
   */
  #originTls = new Map<string, OriginTls>();
  /** REGISTRY_ONLY from the snapshot, and its refusals' metric and log (egress/egress-policy.ts). */
  readonly egress: EgressPolicy;
  /** The peer endpoints (`host:port`) reached over mutual TLS, and the identities they must present (from the snapshot). */
  #peerMtls = new Map<string, PeerMtls>();
  /** The PeerAuthentication of this proxy's inbound listeners (snapshot); absent: PERMISSIVE. */
  #inboundMtls: InboundMtls | undefined;
  /** Connections to other sidecars (outbound), and to this sidecar's app (inbound). */
  readonly #pool = new ConnectionPool({ idleTimeoutMs: PEER_IDLE_TIMEOUT_MS, secureFor: this.#secureFor });
  readonly #appPool = new ConnectionPool();
  /** Every exchange's timeouts, enforced by one sweep (timeout.ts). */
  readonly #deadlines = new Deadlines();
  /**
   * HTTP/2 is loaded on the first HTTP/2 connection or upstream session, not at start:
   * node:http2 is about 3 MB of a sidecar's memory, which a mesh speaking only HTTP/1.1
   * and TCP need not pay (the sidecar's RSS budget is 60 MB).
   */
  #h2: Promise<LoadedH2> | undefined;
  #h2pool: H2SessionPool | undefined;
  readonly #servers: net.Server[] = [];
  /** Client connections per listener, counted as they open and close (not per request). */
  readonly #listenerConnections: { listener: string; accepted: number; active: number }[] = [];
  readonly #sockets = new Set<net.Socket>();
  #admin: http.Server | undefined;
  #control: ControlClient | undefined;
  /** This proxy's key, certificate and trust bundle: what the TLS listeners and connectors take (tls/workload-identity.ts). */
  readonly identity = new WorkloadIdentity();
  /** Mutual TLS from this proxy's identity: the inbound TLS servers, the outbound connect options, sessions (tls/mesh-tls.ts). */
  readonly tls: MeshTls;
  /** End-user JWT rules of the snapshot in force, and their jwksUri sources (authn/). */
  readonly authn: AuthnState;
  readonly #authnMetrics: AuthnMetrics;
  #renewer: CertificateRenewer | undefined;
  /** A gateway's Gateway listeners (gateway/gateway-listeners.ts), opened from its snapshots; absent on a sidecar. */
  #gateway: GatewayListeners | undefined;
  /** The rate limits on this service, their global quotas and demand reports (ratelimit/rate-limit-state.ts). */
  readonly #rateLimits: RateLimitState;
  readonly #rateLimitMetrics: RateLimitMetrics;
  #snapshot: Snapshot | null = null;
  #upstreams: Map<string, CompiledUpstream> | null = null;
  /** The same upstreams by every host name that reaches them from this proxy's namespace (src/api/names.ts). */
  #hosts: Map<string, CompiledUpstream> | null = null;
  /** The instances of the snapshot's services by the addresses they listen at (`host:port`: sidecar inbound, app). */
  #addresses: Map<string, AddressedInstance> | null = null;
  /** Caps the app probes /app-health runs at once (app-health.ts). */
  readonly #appProbeGate: AppProbeGate;
  /** Caps the /metrics responses being sent at once and how long each may take (scrape-gate.ts). */
  readonly #scrapeGate = new ScrapeGate();
  /** The services of the mesh (from the snapshot): the only callers the inbound listener accepts. */
  #meshServices: ReadonlySet<string> = new Set();
  /** The AuthorizationPolicies of this proxy's own service, compiled (authz/engine.ts). */
  #authz: AuthzEngine = NO_AUTHORIZATION;
  /** A gateway's backend name → service resolver for the snapshot in force (made on first use). */
  #serviceOfBackend: ServiceOfBackend | undefined;
  readonly #authzMetrics: AuthzMetrics;
  /** The upgrade protocols this sidecar's own service accepts (its snapshot's inboundUpgrades). */
  #inboundUpgrades: readonly string[] = DEFAULT_UPGRADES;
  /** Retry budgets per destination, kept across snapshots while their settings hold. */
  readonly #budgets = new Map<string, RetryBudget>();
  /** Balancers and outlier detectors per destination, kept across snapshots (balancing.ts). */
  readonly balancing: BalancingState;
  /** Sizes, counts and times every listener holds connections to (limits.ts); a snapshot may change them. */
  readonly limits = new LimitsRef();
  /** Which HTTP the app speaks at each port (declared in the snapshot, or probed): how the inbound listeners forward HTTP/2 to it. */
  readonly #appVersions: { readonly port: number | undefined; readonly version: AppHttpVersion }[] = [];
  /** How each inbound port speaks (a multi-port service's snapshot's inboundPorts); absent ones speak inboundProtocol. */
  #inboundProtocols: ReadonlyMap<number, Protocol> = new Map();
  #waiting: (() => void)[] = [];
  /** Settles once the Gateway ports of the last snapshot applied are open. */
  #gatewayApplied: Promise<void> = Promise.resolve();
  #controlState = 'connecting';
  /** Connection-error log lines written in the current minute, and those left out. */
  readonly #errorLog: LogLimiter;
  /** Makes one upstream's outbound listener (set by start()); the DNS responder's listeners are made by it too. */
  #upstreamServer: ((u: { service: string; servicePort?: number | undefined }) => net.Server) | undefined;
  #dns: DnsResponder | undefined;
  /** Mesh host names → service key, from the snapshot in force (dns/mesh-names.ts). */
  #dnsNames: ReadonlyMap<string, string> = new Map();
  #loopback: LoopbackAddresses | undefined;
  /** Services whose loopback listeners are opened (their address) or are being opened. */
  readonly #dnsOpened = new Map<string, string | undefined>();
  readonly #dnsOpening = new Map<string, Promise<string | undefined>>();
  /** Per service: the ports tried at its address (each once), and how many of them are open. */
  readonly #dnsPortsTried = new Map<string, Set<number>>();
  readonly #dnsPortsOpen = new Map<string, number>();
  #closing = false;
  /** Actual listening addresses (port 0 resolved). */
  readonly addresses: {
    /** The DNS responder (UDP and TCP), with --dns-listen. */
    dns?: HostPort;
    inbound?: HostPort;
    /** A multi-port service's inbound listeners, by service port. */
    ports?: InstancePort[];
    admin?: HostPort;
    httpProxy?: HostPort;
    /** By service, or `service:port` for a listener reaching one port of a multi-port service. */
    upstreams: Record<string, HostPort>;
  } = { upstreams: {} };

  constructor(options: SidecarOptions) {
    // With ports, the first one is the app and inbound every other part (metrics, hello) knows.
    const first = options.ports?.[0];
    const o: SidecarOptions = first === undefined ? options : { ...options, app: options.app ?? first.app, inbound: options.inbound ?? first.inbound };
    this.#o = o;
    this.metrics = new ProxyMetrics({ service: o.service, id: o.id });
    if (o.app) this.metrics.watchAppCpu(o.app.port);
    this.tls = new MeshTls({
      identity: this.identity,
      failed: (direction, reason) => this.metrics.tlsHandshakeFailed(direction, reason),
      connected: () => this.metrics.tlsConnection('outbound', 'auto', 'mtls'),
      log: (line) => o.log(`proxy ${o.id}: ${line}`),
    });
    // Connections held for the certificate are served once it comes (#configured).
    this.identity.on('change', () => this.#releaseWaiting());
    this.#accessLog = openAccessLog(o.accessLog, { ...o.accessLogOptions, onError: (reason) => o.log(`proxy ${o.id}: access log ${o.accessLog}: ${reason}`) });
    this.metrics.watchAccessLog(this.#accessLog);
    this.tap = new TapHub(o.id, this.#accessLog.target, o.tapLimits);
    this.metrics.watchTap(this.tap);
    this.#appProbeGate = new AppProbeGate(o.appProbeConcurrency);
    this.metrics.watchAppProbes(this.#appProbeGate);
    this.metrics.watchScrapes(this.#scrapeGate);
    this.#errorLog = new LogLimiter({
      perMinute: CONNECTION_ERROR_LOG_PER_MINUTE,
      log: o.log,
      dropped: (n) => `proxy ${o.id}: ${n} more connection errors not logged in the last minute`,
    });
    // A collector that is down fails every export: ten lines a minute say so.
    const exportLog = new LogLimiter({
      perMinute: 10,
      log: o.log,
      dropped: (n) => `proxy ${o.id}: ${n} more span export failures not logged in the last minute`,
    });
    this.tracer = new Tracer({
      resource: { 'service.name': o.service, 'service.version': o.version, 'service.instance.id': o.id, 'trellis.proxy.kind': o.kind },
      // Spans go to the control plane's receiver unless the mesh names a collector; only
      // the control plane is sent this proxy's credentials (see TRACES_API in src/control/admin/traces-api.ts).
      defaultEndpoint: `${o.control.replace(/\/+$/, '')}/v1/traces`,
      defaultHeaders: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.credential ? credentialHeaders({ kind: o.kind, service: o.service, id: o.id }, o.credential) : { 'trellis-proxy-id': o.id }),
      },
      ...(o.traceRandom ? { random: o.traceRandom } : {}),
      onExportError: (line) => exportLog.write(() => `proxy ${o.id}: span export failed: ${line}`),
    });
    this.metrics.watchTracing(this.tracer);
    this.#authzMetrics = new AuthzMetrics(this.metrics.registry);
    this.egress = new EgressPolicy(this.metrics.registry, o.id, o.log);
    this.balancing = new BalancingState((service, id, ejected, reason) => {
      o.log(ejected ? `proxy ${o.id}: ejected endpoint ${id} of ${service} (${reason})` : `proxy ${o.id}: endpoint ${id} of ${service} is back in rotation`);
    });
    this.metrics.watchBalancing(this.balancing);
    this.#authnMetrics = new AuthnMetrics(this.metrics.registry);
    this.authn = new AuthnState({
      clock: o.authnClock ?? REAL_AUTHN_CLOCK,
      metrics: this.#authnMetrics,
      log: (line) => o.log(`proxy ${o.id}: ${line}`),
      ...(o.jwksKidCooldownMs !== undefined ? { kidCooldownMs: o.jwksKidCooldownMs } : {}),
    });
    this.metrics.watchCertificate(
      () => this.identity.notAfter,
      () => (o.identityClock ?? Date).now(),
    );
    this.#rateLimits = new RateLimitState({
      report: (msg) => this.#control?.reportDemand(msg) ?? false,
      ...(o.rateLimitClock ? { clock: o.rateLimitClock } : {}),
    });
    this.#rateLimitMetrics = new RateLimitMetrics(this.metrics.registry, () => this.#rateLimits.current?.limits ?? []);
    this.metrics.watchConnections({
      listeners: () => this.#listenerConnections,
      pools: () => [
        { pool: 'peers', ...this.#pool.counts() },
        { pool: 'app', ...this.#appPool.counts() },
      ],
    });
  }

  get snapshot(): Snapshot | null {
    return this.#snapshot;
  }

  /** Connections accepted before the first snapshot (or the certificate it needs), held until it comes. */
  get waitingForSnapshot(): number {
    return this.#waiting.length;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const lookup = (service: string): CompiledUpstream | undefined | null => (this.#upstreams === null ? null : this.#upstreams.get(service));
    const lookupHost = (host: string): CompiledUpstream | undefined | null => (this.#hosts === null ? null : this.#hosts.get(host));
    const pool = this.#pool;
    const lookupAddress = (address: string): AddressedInstance | undefined | null => (this.#addresses === null ? null : this.#addresses.get(address));
    const parts: OutboundParts = {
      service: o.service,
      version: o.version,
      lookup,
      lookupHost,
      lookupAddress,
      metrics: this.metrics,
      accessLog: this.#accessLog,
      deadlines: this.#deadlines,
      tap: this.tap,
      tracer: this.tracer,
      egress: this.egress,
    };
    const codes = { connect: 'TRELLIS_E_CONNECT', reset: 'TRELLIS_E_UPSTREAM_RESET' } as const;
    // One stack per listener (stack/stacks.ts), over the HTTP/1.1 codec here and the
    // HTTP/2 one once HTTP/2 is loaded.
    const outbound = (fixed?: string, port?: number) => outboundStack(parts, fixed, port).build(forwarder(pool, { ...codes, toApp: false }));
    const outboundH2 = (ctx: ListenerContext, fixed?: string, port?: number): H2Server =>
      this.#h2Server((h2, pool) => h2.createH2Server(outboundStack(parts, fixed, port).build(h2.h2Forwarder(pool, codes)), ctx));

    const outCtx = this.#context('outbound');
    // One upstream's listener (`--upstream`, or one the DNS responder opens): its service, or one port of it.
    this.#upstreamServer = (u: { service: string; servicePort?: number | undefined }): net.Server => {
      const pipeline = outbound(u.service, u.servicePort);
      const h2 = outboundH2(outCtx, u.service, u.servicePort);
      const name = u.servicePort === undefined ? u.service : `${u.service}:${u.servicePort}`;
      return net.createServer((socket) =>
        this.#accept(outCtx, socket, () => {
          const service = this.#upstreams?.get(u.service);
          // The port the listener names, or the first (the service itself, for a one-port service).
          const up = u.servicePort === undefined || service?.ports === undefined ? service : service.ports.get(u.servicePort);
          if (up === undefined && this.egress.registryOnly) {
            this.egress.refused('tcp', name);
            socket.destroy();
          } else if (up === undefined) {
            o.log(`proxy: connection to upstream listener "${name}" refused: the control plane does not list it for ${o.service}`);
            socket.destroy();
          } else if (up.protocol === 'tcp') {
            this.#outboundTcp(socket, up, outCtx);
          } else if (up.protocol === 'detect') {
            detectProtocol(socket, pipeline, h2, (s) => this.#outboundTcp(s, up, outCtx), o.detectTimeoutMs ?? DETECT_TIMEOUT_MS, outCtx);
          } else {
            serveHttp(socket, pipeline, h2, outCtx);
          }
        }),
      );
    };
    for (const u of o.upstreams) {
      const name = u.servicePort === undefined ? u.service : `${u.service}:${u.servicePort}`;
      const server = this.#upstreamServer(u);
      this.addresses.upstreams[name] = await listen(server, u.listen, this.#sockets, this.#o.listenFds);
      this.#holdListener(server, `outbound:${name}`);
    }

    if (o.kind === 'gateway') this.#gateway = this.#gatewayListeners(parts, codes, outCtx);

    if (o.dns !== undefined) {
      this.#loopback = new LoopbackAddresses(o.dns.maxServices ?? DNS_MAX_SERVICES);
      this.#dns = new DnsResponder({
        listen: o.dns.listen,
        upstreams: o.dns.upstreams,
        registry: this.metrics.registry,
        ...(o.dns.limits !== undefined ? { limits: o.dns.limits } : {}),
        resolveMesh: (name) => this.#resolveMesh(name),
        log: (line) => o.log(`proxy ${o.id}: ${line}`),
      });
      this.addresses.dns = await this.#dns.start();
    }

    if (o.httpProxy) {
      const ctx = this.#context('http-proxy');
      const pipeline = outbound();
      const h2 = outboundH2(ctx);
      // No wait for the first snapshot here: the pipeline answers 503 no-config until then.
      const server = net.createServer((socket) => this.#guard(ctx, socket, () => serveHttp(socket, pipeline, h2, ctx)));
      this.addresses.httpProxy = await listen(server, o.httpProxy, this.#sockets, this.#o.listenFds);
      this.#holdListener(server, 'http-proxy');
    }

    if (o.kind === 'gateway' && o.egress !== undefined) {
      const ctx = this.#context('http-proxy');
      const pipeline = outbound();
      const h2 = outboundH2(ctx);
      // Only mesh workloads may send the mesh's external traffic out: mutual TLS, whatever the snapshot says.
      const door: InboundDoor = {
        mode: () => 'STRICT',
        tls: this.tls,
        server: this.tls.server((s) => {
          this.#guard(ctx, s, () => {
            if (this.tls.verifiedPeer(s) === undefined) return;
            // Opaque bytes (a TCP, TLS or HTTPS ExternalService) come with the SNI that names
            // where they go (compile/external.ts); HTTP comes without, and names its Host.
            const sni = (s as tls.TLSSocket & { servername?: string | false }).servername;
            if (typeof sni !== 'string' || sni === '') {
              serveHttp(s, pipeline, h2, ctx);
              return;
            }
            const key = externalOfTunnelSni(sni);
            const up = key === undefined ? undefined : this.#upstreams?.get(key);
            if (up === undefined || up.protocol !== 'tcp') {
              this.egress.refused('tcp', sni);
              s.destroy();
            } else {
              this.#outboundTcp(s, up, ctx);
            }
          });
        }),
        silentMs: o.detectTimeoutMs ?? DETECT_TIMEOUT_MS,
        counted: (mode, security) => this.metrics.tlsConnection('inbound', mode, security),
      };
      const server = net.createServer((socket) => this.#accept(ctx, socket, () => admitInbound(socket, door, (s) => serveHttp(s, pipeline, h2, ctx), ctx)));
      this.addresses.inbound = await listen(server, o.egress, this.#sockets, this.#o.listenFds);
      this.#holdListener(server, 'egress');
    }

    if (o.ports !== undefined && o.ports.length > 0) {
      this.addresses.ports = [];
      for (const p of o.ports) {
        const inbound = await this.#openInbound(p.app, p.inbound, p.port);
        this.addresses.ports.push({ port: p.port, app: p.app, inbound });
      }
      this.addresses.inbound = this.addresses.ports[0]?.inbound;
    } else if (o.inbound && o.app) {
      this.addresses.inbound = await this.#openInbound(o.app, o.inbound, undefined);
    }

    this.#admin = http.createServer((req, res) => {
      this.#serveAdmin(req, res).catch((err: unknown) => {
        this.#o.log(`proxy ${this.#o.id}: admin request failed: ${errorSummary(err)}`);
        if (!res.headersSent) res.statusCode = 500;
        res.end();
      });
    });
    this.addresses.admin = await listen(this.#admin, o.admin, undefined, this.#o.listenFds);

    const namespace = splitServiceKey(o.service).namespace;
    const info: ProxyInfo = {
      id: o.id,
      service: o.service,
      ...(namespace !== DEFAULT_NAMESPACE ? { namespace } : {}),
      version: o.version,
      kind: o.kind,
      app: o.app,
      inbound: this.addresses.inbound,
      admin: this.addresses.admin,
      ...(this.addresses.ports !== undefined ? { ports: this.addresses.ports } : {}),
      httpProxy: this.addresses.httpProxy,
      pid: process.pid,
      upstreams: o.upstreams.map((u) => {
        const listen = this.addresses.upstreams[u.servicePort === undefined ? u.service : `${u.service}:${u.servicePort}`]!;
        return u.servicePort === undefined ? { service: u.service, listen } : { service: u.service, listen, servicePort: u.servicePort };
      }),
    };
    const control = new ControlClient({
      url: o.control,
      token: o.token,
      ...(o.credentialFile !== undefined ? { credential: credentialReader(o.credentialFile) } : o.credential !== undefined ? { credential: o.credential } : {}),
      info,
      apply: (s) => {
        try {
          this.apply(s);
        } catch (err) {
          this.metrics.configRejected();
          throw err;
        }
      },
      onRateQuota: (msg) => this.#rateLimits.onQuota(msg),
      onTrustBundle: (bundle) => {
        this.identity.setTrustBundle(bundle);
        o.log(`proxy ${o.id}: the trust bundle changed (${bundle.length} root(s))`);
      },
      onState: (connected, detail) => {
        this.metrics.controlConnected.set(connected ? 1 : 0);
        if (connected) this.#renewer?.nudge();
        if (detail !== this.#controlState) o.log(`proxy ${o.id}: control plane ${detail}`);
        this.#controlState = detail;
      },
      onFatal: (code, message) => {
        o.log(`proxy ${o.id}: the control plane refused this proxy: ${code}: ${message}`);
      },
    });
    this.#control = control;
    this.#renewer = new CertificateRenewer({
      identity: this.identity,
      request: (csr) => control.requestCertificate(csr),
      ...(o.identityClock ? { clock: o.identityClock } : {}),
      log: (line) => o.log(`proxy ${o.id}: ${line}`),
    });
    control.start();
  }

  /**
   * Opens an inbound listener in front of the app at `appAt`: for a multi-port service one
   * per service port (`port`), each speaking that port's protocol; returns where it listens.
   */
  async #openInbound(appAt: HostPort, inboundAt: HostPort, port: number | undefined): Promise<HostPort> {
    const o = this.#o;
    const app: Endpoint = { id: port === undefined ? `${o.id}/app` : `${o.id}/app:${port}`, host: appAt.host, port: appAt.port, version: o.version };
    const toApp = forwarder(this.#appPool, { connect: 'TRELLIS_E_APP_UNAVAILABLE', reset: 'TRELLIS_E_UPSTREAM_RESET', toApp: true });
    // The port AuthorizationPolicies name: a multi-port service's own port; a one-port service's app port (Istio's target port).
    const authzPort = port ?? appAt.port;
    const inbound = inboundStack({
      service: o.service,
      version: o.version,
      app,
      metrics: this.metrics,
      accessLog: this.#accessLog,
      deadlines: this.#deadlines,
      tap: this.tap,
      tracer: this.tracer,
      identify: peerIdentity(() => this.#meshServices),
      requestAuthn: { current: () => this.authn.current, metrics: this.#authnMetrics },
      port: authzPort,
      authorization: () => this.#authz,
      authzMetrics: this.#authzMetrics,
      upgrades: () => this.#inboundUpgrades,
      rateLimits: () => this.#rateLimits.current,
      rateLimitObserver: this.#rateLimitMetrics,
      clock: () => this.#rateLimits.now(),
    });
    const ctx = this.#context('inbound');
    const pipeline = inbound.build(toApp);
    const appVersion = new AppHttpVersion(
      () => probeAppHttp(app, this.limits.current.appProbeTimeoutMs),
      (r) => o.log(`proxy ${o.id}: the app at ${endpointKey(app)} speaks ${r.version === 'h2' ? 'HTTP/2 (h2c)' : 'HTTP/1.1'} (${r.evidence})`),
    );
    this.#appVersions.push({ port, version: appVersion });
    if (this.#snapshot !== null) appVersion.declare(this.#inboundProtocol(port));
    // An app declared HTTP/2-only can't take HTTP/1.1: such a request is answered with the cause, not sent.
    const refused = inbound.build(refuseHttp1(endpointKey(app)));
    // HTTP/2 in: to the app in its own HTTP (h2/app-codec.ts), as HTTP/2 (h2c; a gRPC
    // server speaks nothing else) or translated to HTTP/1.1 over the same app pool as above.
    const h2 = this.#h2Server((h2, pool) =>
      h2.createH2Server(
        inbound.build(
          h2.appCodec(appVersion, {
            h2: h2.h2Forwarder(pool, { connect: 'TRELLIS_E_APP_UNAVAILABLE', reset: 'TRELLIS_E_UPSTREAM_RESET' }),
            h1: h2.toHttp1(toApp),
          }),
        ),
        ctx,
      ),
    );
    // Served once the door (listeners/mtls-inbound.ts) admitted the connection: plaintext,
    // or the TLS socket of a verified peer.
    const serve = (socket: net.Socket, peer: VerifiedPeer | undefined): void => {
      const tcp = (s: net.Socket): void => this.#inboundTcp(s, peer?.name, port, app, ctx);
      // #accept runs this once a snapshot is in force.
      const protocol = this.#inboundProtocol(port);
      // Chosen per connection, so HTTP/1.1's per-request path is the same as ever. An app
      // declared HTTP/2-only but found answering HTTP/1.1 gets HTTP/1.1 (the error would be false).
      const h1 = appVersion.declared === 'h2' && !appVersion.declaredWrongly ? refused : pipeline;
      if (protocol === 'tcp') {
        tcp(socket);
      } else if (protocol === 'detect') {
        detectProtocol(socket, h1, h2, tcp, o.detectTimeoutMs ?? DETECT_TIMEOUT_MS, ctx);
      } else {
        serveHttp(socket, h1, h2, ctx);
      }
    };
    const door: InboundDoor = {
      mode: () => this.#inboundMode(port),
      tls: this.tls,
      server: this.tls.server((s) => {
        this.#guard(ctx, s, () => {
          const peer = this.tls.verifiedPeer(s);
          if (peer !== undefined) serve(s, peer);
        });
      }),
      silentMs: o.detectTimeoutMs ?? DETECT_TIMEOUT_MS,
      counted: (mode, security) => this.metrics.tlsConnection('inbound', mode, security),
    };
    const server = net.createServer((socket) => this.#accept(ctx, socket, () => admitInbound(socket, door, serve, ctx)));
    const at = await listen(server, inboundAt, this.#sockets, this.#o.listenFds);
    this.#holdListener(server, port === undefined ? 'inbound' : `inbound:${port}`);
    return at;
  }

  /**
   * The DNS responder's question: the loopback address of mesh name `name`, once the
   * service's listeners are open there (the first query opens them), or undefined for a
   * name that is not a mesh service's, or whose listeners could not be opened (forwarded).
   */
  #resolveMesh(name: string): string | undefined | Promise<string | undefined> {
    const key = this.#dnsNames.get(name);
    if (key === undefined) return undefined;
    if (this.#dnsOpened.has(key)) return this.#dnsOpened.get(key);
    let opening = this.#dnsOpening.get(key);
    if (opening === undefined) {
      opening = this.#openMeshListeners(key)
        .catch((err: unknown) => {
          this.#o.log(`proxy ${this.#o.id}: dns: opening ${key}'s listeners failed: ${errorSummary(err)}`);
          return undefined;
        })
        .then((address) => {
          this.#dnsOpening.delete(key);
          this.#dnsOpened.set(key, address);
          return address;
        });
      this.#dnsOpening.set(key, opening);
    }
    return opening;
  }

  /**
   * Opens service `key`'s outbound listeners at its loopback address, one per port
   * (dns/mesh-names.ts meshPorts). A port the app itself listens on is skipped: a listener
   * on 127.255.x.y:P and the app's on 0.0.0.0:P cannot both exist. Resolves with the
   * address when at least one port is open; never rejects.
   */
  async #openMeshListeners(key: string): Promise<string | undefined> {
    const o = this.#o;
    if (this.#snapshot?.upstreams[key] === undefined) return undefined;
    const address = this.#loopback?.addressOf(key);
    if (address === undefined) {
      o.log(`proxy ${o.id}: dns: ${key} gets no address: ${this.#loopback?.size} services have one already (the limit); its name is forwarded`);
      return undefined;
    }
    return (await this.#openMeshPorts(key, address)) > 0 ? address : undefined;
  }

  /**
   * Opens the listeners of service `key`'s ports at `address` that were not tried yet (each
   * port is tried once: one that failed is logged once); returns how many are open now.
   * Called on the first query and again on every snapshot, so ports the service gains (a
   * new instance's app port, a port added to the Service) are opened too.
   */
  async #openMeshPorts(key: string, address: string): Promise<number> {
    const o = this.#o;
    const u = this.#snapshot?.upstreams[key];
    const make = this.#upstreamServer;
    const open = (): number => this.#dnsPortsOpen.get(key) ?? 0;
    if (u === undefined || make === undefined) return open();
    let tried = this.#dnsPortsTried.get(key);
    if (tried === undefined) this.#dnsPortsTried.set(key, (tried = new Set()));
    const own = new Set<number>([...(o.ports ?? []).map((p) => p.app.port), ...(o.app !== undefined ? [o.app.port] : [])]);
    for (const port of meshPorts(u)) {
      if (tried.has(port)) continue;
      tried.add(port);
      if (own.has(port)) {
        o.log(`proxy ${o.id}: dns: ${key}'s port ${port} is also this app's own port; not opened at ${address}`);
        continue;
      }
      const servicePort = Array.isArray(u.ports) && u.ports.length > 0 ? port : undefined;
      const server = make({ service: key, servicePort });
      try {
        await listen(server, { host: address, port }, this.#sockets);
      } catch (err) {
        server.close();
        o.log(`proxy ${o.id}: dns: cannot listen for ${key} at ${address}:${port}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        continue;
      }
      if (this.#closing) {
        server.close();
        return open();
      }
      this.#holdListener(server, `outbound:${servicePort === undefined ? key : `${key}:${servicePort}`}`);
      this.#dnsPortsOpen.set(key, open() + 1);
    }
    return open();
  }

  /** After a snapshot: services already answered get listeners for ports they gained; those that had none are asked again on their next query. */
  #refreshMeshListeners(): void {
    for (const [key, address] of this.#dnsOpened) {
      if (address === undefined) {
        this.#dnsOpened.delete(key);
        continue;
      }
      this.#openMeshPorts(key, address).catch((err: unknown) => this.#o.log(`proxy ${this.#o.id}: dns: opening ${key}'s ports failed: ${errorSummary(err)}`));
    }
  }

  /** The PeerAuthentication mode of the inbound listener of `port` (undefined: the one port), from the snapshot in force. */
  #inboundMode(port: number | undefined): MtlsMode {
    const m = this.#inboundMtls;
    // A snapshot that says nothing (a control plane from before mTLS, a test's own) takes
    // both: its callers' plaintext as before, and mutual TLS from callers told to use it.
    if (m === undefined) return 'PERMISSIVE';
    if (port !== undefined && m.ports !== undefined) for (const p of m.ports) if (p.port === port) return p.mode;
    return m.mode;
  }

  /**
   * An inbound TCP connection (a tcp service, or opaque bytes of a detected one), admitted
   * with its verified peer: the L4 authorization hook decides before the app connection opens.
   */
  #inboundTcp(socket: net.Socket, peer: WorkloadName | undefined, port: number | undefined, app: Endpoint, ctx: ListenerContext): void {
    const o = this.#o;
    // L4 authorization before the app connection is opened: the verified peer (undefined for
    // a plaintext caller) and the service port (a multi-port service's; else the app's).
    const check = { engine: this.#authz, metrics: this.#authzMetrics, accessLog: this.#accessLog, destination: o.service };
    if (!authorizeConnection(check, peer, port ?? app.port)) {
      socket.destroy();
      return;
    }
    const source = peer === undefined ? UNKNOWN_SOURCE : serviceKey(peer.serviceAccount, peer.namespace);
    proxyTcp(socket, (tried) => (tried.size === 0 ? app : undefined), {
      direction: 'inbound',
      source: this.#meshServices.has(source) ? source : UNKNOWN_SOURCE,
      destination: o.service,
      metrics: this.metrics,
      accessLog: this.#accessLog,
      failed: (err) => ctx.failed('tcp', err, socket),
      // As Istio's inbound tcp_proxy: a client that is not a sidecar (PERMISSIVE plaintext) is held to them too.
      connectTimeoutMs: this.limits.current.tcpConnectTimeoutMs,
      idleTimeoutMs: this.limits.current.tcpIdleTimeoutMs,
    });
  }

  /** How the inbound listener of `port` (undefined: the one port) speaks, from the snapshot in force. */
  #inboundProtocol(port: number | undefined): Protocol {
    return (port === undefined ? undefined : this.#inboundProtocols.get(port)) ?? this.#snapshot?.inboundProtocol ?? 'http';
  }

  /** Applies a snapshot; throws (→ NACK) when it cannot be used, leaving the current one. */
  apply(given: Snapshot): void {
    if (typeof given !== 'object' || given === null || typeof given.upstreams !== 'object')
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', { version: '?', reason: 'it has no upstreams' });
    // A gateway opening its Gateway's ports elsewhere redirects clients there (gateway/port-map.ts).
    const s = this.#o.gatewayListen?.ports !== undefined ? withMappedRedirects(given, this.#o.gatewayListen.ports) : given;
    let limits: ReturnType<typeof limitsWith>;
    try {
      limits = limitsWith(s.limits);
    } catch (err) {
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', {
        version: s.version,
        reason: err instanceof TrellisError ? String(err.params.reason) : String(err),
      });
    }
    const tracingProblem = checkTracing(s.tracing);
    if (tracingProblem !== undefined) throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', { version: s.version, reason: `tracing: ${tracingProblem}` });
    const compiled = new Map<string, CompiledUpstream>();
    const keys = new Set<string>();
    const budgets = this.#budgets;
    const budgetFor: BudgetSource = (service, config) => {
      let b = budgets.get(service);
      if (b === undefined || !b.sameAs(config)) budgets.set(service, (b = new RetryBudget(config)));
      return b;
    };
    const backendsFor: BackendSource = (u, key) => this.balancing.backendsFor(u, key);
    const previous = this.#snapshot?.upstreams;
    for (const [name, u] of Object.entries(s.upstreams)) {
      // A delta keeps the very object of every upstream it did not change (src/api/snapshot-delta.ts):
      // its compiled form is reused, so a change elsewhere costs this upstream nothing (issue 17).
      const same = previous !== undefined && previous[name] === u ? this.#upstreams?.get(name) : undefined;
      try {
        compiled.set(name, same ?? compileUpstream(u, backendsFor, budgetFor));
      } catch (err) {
        throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', {
          version: s.version,
          reason: `upstream "${name}": ${err instanceof Error ? err.message : String(err)}`,
        });
      }
      for (const one of u.ports ?? [u]) for (const b of Object.values(one.backends)) for (const e of b.endpoints) keys.add(connectionKey(e));
    }
    if (this.#o.app) keys.add(endpointKey(this.#o.app));
    for (const p of this.#o.ports ?? []) keys.add(endpointKey(p.app));
    let authz: AuthzEngine;
    try {
      authz = s.authorization === undefined ? NO_AUTHORIZATION : new AuthzEngine(s.authorization);
    } catch (err) {
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', {
        version: s.version,
        reason: `authorization: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
    let commitRateLimits: () => void;
    try {
      commitRateLimits = this.#rateLimits.prepare(s.rateLimits);
      // Last of the checks that may refuse the snapshot, first of what it changes: its JWT
      // rules are in force from here (a NACK above leaves the old ones).
      this.authn.apply(this.#o.kind === 'sidecar' ? s.requestAuthentication : undefined);
    } catch (err) {
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', { version: s.version, reason: err instanceof Error ? err.message : String(err) });
    }
    let commitGateway: (() => Promise<void>) | undefined;
    try {
      commitGateway = this.#gateway?.prepare(s.gateway);
    } catch (err) {
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', { version: s.version, reason: err instanceof Error ? err.message : String(err) });
    }
    const inboundUpgrades = upgradeList(s.inboundUpgrades);
    const inboundProtocols = new Map<number, Protocol>();
    for (const p of Array.isArray(s.inboundPorts) ? s.inboundPorts : []) {
      if (typeof p === 'object' && p !== null && typeof p.port === 'number' && typeof p.protocol === 'string') inboundProtocols.set(p.port, p.protocol);
    }
    const peerMtls = peerMtlsIndex(s);
    let originTls: Map<string, OriginTls>;
    try {
      originTls = originTlsIndex(s);
    } catch (err) {
      throw new TrellisError('TRELLIS_E_SNAPSHOT_REJECTED', { version: s.version, reason: `an ExternalService's CA bundle: ${errorSummary(err)}` });
    }
    this.#snapshot = s;
    this.tracer.configure(s.tracing);
    this.#upstreams = compiled;
    // A peer whose security changed (mTLS turned on or off, another identity) gets new connections.
    for (const key of keys) {
      const before = this.#peerMtls.get(key);
      const after = peerMtls.get(key);
      if (before?.identities.join(' ') === after?.identities.join(' ')) continue;
      this.#pool.closeIdle(key);
      this.#h2pool?.closeOne(key);
    }
    this.#peerMtls = peerMtls;
    for (const key of originTls.keys()) keys.add(key);
    this.#originTls = originTls;
    this.egress.registryOnly = s.outboundTrafficPolicy === 'REGISTRY_ONLY';
    this.#inboundMtls = typeof s.mtls === 'object' && s.mtls !== null && typeof s.mtls.mode === 'string' ? s.mtls : undefined;
    this.tls.retainOnly(keys);
    this.#hosts = hostIndex(s, compiled);
    if (this.#dns !== undefined) {
      this.#dnsNames = meshNames(s);
      this.#refreshMeshListeners();
    }
    this.#addresses = addressIndex(s, compiled);
    this.limits.current = limits;
    for (const server of this.#servers) server.maxConnections = limits.maxConnectionsPerListener;
    this.#meshServices = new Set(Array.isArray(s.meshServices) ? s.meshServices.filter((n) => typeof n === 'string') : []);
    this.#serviceOfBackend = undefined;
    this.egress.meshServices = this.#meshServices;
    this.#authz = authz;
    this.#inboundProtocols = inboundProtocols;
    for (const a of this.#appVersions) a.version.declare(this.#inboundProtocol(a.port));
    this.#inboundUpgrades = inboundUpgrades;
    commitRateLimits();
    this.#pool.retainOnly(keys);
    this.#deadlines.setSweepInterval(sweepIntervalMs(eachUpstream(compiled.values())));
    for (const service of budgets.keys()) if (!compiled.has(service)) budgets.delete(service);
    this.#h2pool?.retainOnly(keys);
    this.balancing.retainOnly(new Set([...eachUpstream(compiled.values())].map((u) => u.key)));
    this.balancing.drainQueues();
    this.#gatewayApplied = commitGateway?.() ?? Promise.resolve();
    this.metrics.configApplied(s.version, Date.now());
    this.#releaseWaiting();
  }

  /**
   * Whether accepted connections can be served: a snapshot is in force and, when it asks
   * for mutual TLS (peers reached over it, or a STRICT inbound listener), this proxy has
   * its certificate. A sidecar that restarts gets its snapshot before its certificate (a
   * CSR round trip later): serving in between failed the app's new connections.
   */
  #configured(): boolean {
    if (this.#upstreams === null) return false;
    if (this.identity.ready) return true;
    return this.#peerMtls.size === 0 && this.#inboundMtls?.mode !== 'STRICT';
  }

  /** Serves the connections held by {@link #whenConfigured}, once the proxy is configured. */
  #releaseWaiting(): void {
    if (this.#waiting.length === 0 || !this.#configured()) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w();
  }

  /** Where each Gateway port listens, once the snapshot that opened it is in force (`whenGatewayApplied`). */
  gatewayAddresses(): Record<string, HostPort> {
    return this.#gateway?.addresses() ?? {};
  }

  /** Resolves once the Gateway ports of the snapshot applied last are open (or failed to, which is logged). */
  whenGatewayApplied(): Promise<void> {
    return this.#gatewayApplied;
  }

  #gatewayListeners(parts: OutboundParts, codes: { connect: 'TRELLIS_E_CONNECT'; reset: 'TRELLIS_E_UPSTREAM_RESET' }, ctx: ListenerContext): GatewayListeners {
    const o = this.#o;
    let lastLog = 0;
    return new GatewayListeners({
      host: o.gatewayListen?.host ?? '127.0.0.1',
      portMap: o.gatewayListen?.ports ?? new Map(),
      ctx,
      // One stack per port and scheme, over the same codecs as every outbound listener.
      pipelines: (upstream, scheme, port) => {
        // The Gateway's own AuthorizationPolicies and RateLimitPolicies (its snapshot's), judged at the edge.
        const edge: EdgeParts = {
          port,
          authorization: () => this.#authz,
          authzMetrics: this.#authzMetrics,
          rateLimits: () => this.#rateLimits.current,
          rateLimitObserver: this.#rateLimitMetrics,
          rateLimitClock: () => this.#rateLimits.now(),
          serviceOfBackend: () => (this.#serviceOfBackend ??= serviceOfBackend(this.#meshServices)),
        };
        return {
          h1: gatewayStack(parts, upstream, scheme, edge).build(forwarder(this.#pool, { ...codes, toApp: false })),
          h2: this.#h2Server((h2, pool) => h2.createH2Server(gatewayStack(parts, upstream, scheme, edge).build(h2.h2Forwarder(pool, codes)), ctx)),
        };
      },
      open: async (server, at, name) => {
        const address = await listen(server, at, this.#sockets, this.#o.listenFds);
        this.#holdListener(server, name);
        return address;
      },
      release: (server) => this.#releaseListener(server),
      passthrough: (upstream, sni, socket) => {
        const up = this.#upstreams?.get(upstream);
        const route = up?.routes.find((r) => sniTakes(r, sni));
        if (up === undefined || route === undefined) return false;
        this.#outboundTcp(socket, up, ctx, route);
        return true;
      },
      refused: (port, reason) => {
        this.metrics.connectionRefused(`gateway:${port}`, reason);
        // Once a second at most: a scanner may send junk to every connection.
        const now = Date.now();
        if (now - lastLog >= 1000) {
          lastLog = now;
          o.log(`proxy ${o.id}: gateway port ${port} refused a client before HTTP (${reason})`);
        }
      },
      log: (line) => o.log(`proxy ${o.id}: ${line}`),
    });
  }

  /** Undoes #holdListener for a listener that was closed (a Gateway port gone from the snapshot). */
  #releaseListener(server: net.Server): void {
    const i = this.#servers.indexOf(server);
    if (i !== -1) {
      this.#servers.splice(i, 1);
      this.#listenerConnections.splice(i, 1);
    }
  }

  /**
   * Holds a listener to the connection limit and keeps it alive through accept errors:
   * a server 'error' with no listener ends the process. (libuv absorbs EMFILE itself,
   * by accepting and closing the excess, but passes other accept errors on.) Node closes
   * connections over `maxConnections` itself and says so with 'drop'.
   */
  #holdListener(server: net.Server, name: string): void {
    this.#servers.push(server);
    server.maxConnections = this.limits.current.maxConnectionsPerListener;
    server.on('drop', () => this.metrics.connectionRefused(name, 'max-connections'));
    const count = { listener: name, accepted: 0, active: 0 };
    this.#listenerConnections.push(count);
    server.on('connection', (socket: net.Socket) => {
      count.accepted++;
      count.active++;
      socket.once('close', () => count.active--);
    });
    let lastLog = 0;
    server.on('error', (err: NodeJS.ErrnoException) => {
      this.metrics.connectionRefused(name, 'accept-error');
      // Once a second at most: a listener out of file descriptors fails every accept.
      const now = Date.now();
      if (now - lastLog >= 1000) {
        lastLog = now;
        this.#o.log(`proxy ${this.#o.id}: listener ${name} could not accept a connection: ${err.code ?? err.message}`);
      }
    });
  }

  /** An HTTP/2 server made by `make` on first use, after HTTP/2 is loaded (see #h2). */
  #h2Server(make: (h2: LoadedH2['parts'], pool: H2SessionPool) => Http2Server): H2Server {
    let server: Promise<Http2Server> | undefined;
    return () => (server ??= this.#loadH2().then(({ parts, pool }) => make(parts, pool)));
  }

  #loadH2(): Promise<LoadedH2> {
    return (this.#h2 ??= Promise.all([
      import('./h2/forwarder.js'),
      import('./h2/server-stream.js'),
      import('./h2/app-codec.js'),
      import('./h2/to-http1.js'),
    ]).then(([f, c, a, t]) => {
      this.#h2pool = new f.H2SessionPool({ secureFor: this.#secureFor });
      return { pool: this.#h2pool, parts: { ...f, ...c, ...a, ...t } };
    }));
  }

  #outboundTcp(socket: net.Socket, up: CompiledUpstream, ctx: ListenerContext, route?: CompiledRoute): void {
    // A TLS ExternalService under REGISTRY_ONLY: the client's hello must name one of its hosts.
    const sniHosts = route === undefined && this.egress.registryOnly ? this.#snapshot?.upstreams[up.service]?.sniHosts : undefined;
    if (Array.isArray(sniHosts)) {
      peekClientHello(
        socket,
        this.limits.current.requestHeaderTimeoutMs,
        (read) => {
          if (read.kind === 'hello' && sniAllowed(read.sni, sniHosts)) this.#proxyTcp(socket, up, ctx, route);
          else {
            this.egress.refused(
              'tcp',
              read.kind === 'hello' ? (read.sni ?? '(no SNI)') : `(${read.kind === 'timeout' ? 'no' : 'not a'} TLS hello for ${up.service})`,
            );
            socket.destroy();
          }
        },
        (err) => ctx.failed('tcp', err, socket),
      );
      return;
    }
    this.#proxyTcp(socket, up, ctx, route);
  }

  #proxyTcp(socket: net.Socket, up: CompiledUpstream, ctx: ListenerContext, route?: CompiledRoute): void {
    // TCP has no request to route: each connection picks a backend by the weights of
    // the service's TCPRoute (without one, the whole service), then an endpoint. The
    // opaque connections of a detected service (whose routes are HTTP) go to the whole service.
    // A gateway's Passthrough connection comes with the TLSRoute its SNI chose.
    const tcpRoute = route ?? (up.protocol === 'tcp' ? up.routes[0] : undefined);
    const name = tcpRoute === undefined ? up.service : (pickBackend(tcpRoute) ?? '');
    const backend = up.backends.get(name);
    const balancer = backend?.balancer;
    proxyTcp(
      socket,
      (tried) => {
        if (!balancer) return undefined;
        const r = balancer.pick(tried);
        return r.type === 'pick' && !tried.has(r.endpoint.id) ? r.endpoint : undefined;
      },
      {
        direction: 'outbound',
        source: this.#o.service,
        // A Passthrough port's table is no service: the backend (a service of the snapshot) is the destination.
        destination: route === undefined ? up.service : (backend?.name ?? 'unknown'),
        metrics: this.metrics,
        accessLog: this.#accessLog,
        failed: (err) => ctx.failed('tcp', err, socket),
        secureFor: this.#secureFor,
        ...tunnelSniOf(this.#snapshot?.upstreams[up.service]?.backends[name]),
        connectTimeoutMs: this.limits.current.tcpConnectTimeoutMs,
        idleTimeoutMs: this.limits.current.tcpIdleTimeoutMs,
      },
      balancer,
    );
  }

  /** What the entry code of `listener` is given: the limits, and where to report a failed connection. */
  #context(listener: ListenerKind): ListenerContext {
    return {
      listener,
      limits: this.limits,
      failed: (reason, err, socket) => this.#connectionFailed(listener, reason, err, socket),
      refused: (limit, n = 1) => this.metrics.limitRefused(listener, limit, n),
      // What each HTTP/1.1 connection is held to (limits.ts), and where its refusals are counted.
      http1: { limits: this.limits, refused: (token) => this.metrics.requestRefused(listener === 'inbound' ? 'inbound' : 'outbound', token) },
    };
  }

  /**
   * A connection (or HTTP/2 stream) whose handling failed: counted, logged (at most
   * CONNECTION_ERROR_LOG_PER_MINUTE lines a minute), and `socket`, when given, destroyed.
   * The log line names the client's address and where the error was thrown, never
   * anything the client sent.
   */
  #connectionFailed(listener: ListenerKind, reason: ConnectionErrorReason, err: unknown, socket?: net.Socket): void {
    const from = socket?.remoteAddress !== undefined ? ` from ${socket.remoteAddress}:${socket.remotePort}` : '';
    socket?.destroy();
    this.metrics.connectionError(listener, reason);
    this.#errorLog.write(() => `proxy ${this.#o.id}: ${listener} listener: ${REASON_TEXT[reason]}${from}: ${errorSummary(err)}`);
  }

  /** Runs the per-connection `fn`: an exception ends this connection only, reported to `ctx`. */
  #guard(ctx: ListenerContext, socket: net.Socket, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      ctx.failed('accept', err, socket);
    }
  }

  /** Runs `fn` (guarded) for an accepted connection once a snapshot is in force. */
  #accept(ctx: ListenerContext, socket: net.Socket, fn: () => void): void {
    this.#whenConfigured(socket, () => this.#guard(ctx, socket, fn));
  }

  /** Runs `fn` now if the proxy is configured (a snapshot, and the certificate it needs), else once it is. */
  #whenConfigured(socket: net.Socket, fn: () => void): void {
    if (this.#configured()) return fn();
    socket.pause();
    const timer = setTimeout(() => socket.destroy(), FIRST_SNAPSHOT_WAIT_MS);
    this.#waiting.push(() => {
      clearTimeout(timer);
      if (socket.destroyed) return;
      // Adding a 'data' listener does not restart a paused socket; whoever needs it held
      // (the TCP proxy, until it connects) pauses it again before any byte flows.
      socket.resume();
      fn();
    });
  }

  async #serveAdmin(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      await this.#routeAdmin(req, res);
    } catch (err) {
      if (!(err instanceof TrellisError) || res.headersSent) throw err;
      res.statusCode = err.status;
      if (err.code === 'TRELLIS_E_METHOD_NOT_ALLOWED') res.setHeader('allow', req.url?.startsWith('/explain') === true ? 'POST' : 'GET, HEAD');
      // Every 503 here is a limit reached (taps, app probes, scrapes): the client may come
      // back in a second (RFC 9110 §10.2.3).
      if (err.status === 503) res.setHeader('retry-after', '1');
      res.setHeader('content-type', 'application/json');
      res.setHeader('trellis-error', err.token);
      res.end(JSON.stringify(errorBody(err)));
    }
  }

  /** Whether the request carries the admin credential, when the proxy has one (compared in constant time). */
  #adminAllowed(req: http.IncomingMessage): boolean {
    const token = this.#o.adminToken;
    if (token === undefined) return true;
    const given = Buffer.from(req.headers.authorization ?? '');
    const wanted = Buffer.from(`Bearer ${token}`);
    return given.length === wanted.length && timingSafeEqual(given, wanted);
  }

  async #routeAdmin(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const [path = '/', query = ''] = (req.url ?? '/').split('?', 2);
    // Read-only, and the map of the mesh for loopback peers only (admin-access.ts says why).
    const refused = adminRefusal(req, path);
    if (refused) throw refused;
    if ((path === '/tap' || path === '/explain' || path === '/explain/inbound') && !this.#adminAllowed(req)) {
      throw new TrellisError('TRELLIS_E_PROXY_ADMIN_UNAUTHORIZED', { path });
    }
    if (path === '/tap') {
      serveTap(this.tap, new URLSearchParams(query), req, res);
    } else if (path === '/explain/inbound') {
      // The destination's side of `trellis explain`: what this sidecar's authentication and
      // authorization would make of the request from the caller named (authz/explain.ts).
      const request = parseInboundExplainRequest(await explainBody(req, path));
      if (typeof request === 'string') throw new TrellisError('TRELLIS_E_USAGE', { reason: request });
      const view = await explainInbound(
        {
          proxy: this.#o.id,
          engine: this.#authz,
          authenticator: this.authn.current,
          portOf: (port) => {
            const ports = this.addresses.ports ?? [];
            if (ports.length > 0) return port === undefined ? ports[0]!.port : ports.find((p) => p.port === port)?.port;
            const app = this.#o.app?.port;
            return port === undefined || port === app ? app : undefined;
          },
          mode: (port) => this.#inboundMode((this.addresses.ports?.length ?? 0) > 0 ? port : undefined),
        },
        request,
      );
      if (typeof view === 'string') throw new TrellisError('TRELLIS_E_USAGE', { reason: view });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(view, null, 2));
    } else if (path === '/explain') {
      const request = parseExplainRequest(await explainBody(req, path));
      if (typeof request === 'string') throw new TrellisError('TRELLIS_E_USAGE', { reason: request });
      const view = explain(
        {
          proxy: this.#o.id,
          caller: this.identity.spiffeId ?? null,
          snapshot: this.#snapshot,
          lookupHost: (host) => (this.#hosts === null ? null : this.#hosts.get(host)),
          lookupAddress: (address) => (this.#addresses === null ? null : this.#addresses.get(address)),
          endpoints: () => this.balancing.view(),
          breakers: () => this.balancing.breakers(),
        },
        request,
      );
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(view, null, 2));
    } else if (path === '/metrics') {
      // Admitted before the exposition is built, so scrapes awaiting theirs count too.
      const limits = this.limits.current;
      if (!this.#scrapeGate.admit(res, limits)) throw new TrellisError('TRELLIS_E_SCRAPE_LIMIT', { limit: limits.maxConcurrentScrapes });
      // OpenMetrics when the scraper asks for it (Prometheus does): only it carries exemplars.
      const om = wantsOpenMetrics(req.headers.accept);
      res.setHeader('content-type', om ? OPENMETRICS_CONTENT_TYPE : this.metrics.contentType);
      // The bytes are the metrics' own, lent until sent (or until the gate destroys a
      // response not sent within scrapeTimeout: scrape-gate.ts).
      const body = await this.metrics.exposition(om);
      res.end(body, () => this.metrics.releaseExposition(body));
    } else if (path === '/live') {
      // Liveness: the process answers. Never the control plane's state: one that is down must not restart proxies.
      res.end('live\n');
    } else if (path.startsWith(APP_HEALTH_PREFIX)) {
      const probe = this.#o.appProbes?.get(path);
      if (probe === undefined) throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: 'no app probe of this pod has that path' });
      const running = this.#appProbeGate.run(() => runAppProbe(probe));
      if (running === undefined) throw new TrellisError('TRELLIS_E_APP_PROBE_LIMIT', { limit: this.#appProbeGate.limit });
      const status = await running;
      res.statusCode = status >= 200 && status < 400 ? status : 503;
      res.end(`app answered ${status}\n`);
    } else if (path === '/ready') {
      res.statusCode = this.#snapshot ? 200 : 503;
      res.end(this.#snapshot ? 'ready\n' : 'waiting for the first snapshot from the control plane\n');
    } else if (path === '/balancing') {
      // Endpoint load and health and circuit breakers, for `trellis status`.
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: this.#o.id, endpoints: this.balancing.view(), breakers: this.balancing.breakers() }, null, 2));
    } else if (path === '/identity') {
      // The certificate and roots are public; the key never leaves WorkloadIdentity but for a TLS context.
      const view = this.identity.view();
      res.statusCode = view ? 200 : 503;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(view ? { id: this.#o.id, ...view } : { id: this.#o.id, status: 'waiting for a certificate from the control plane' }, null, 2));
    } else if (path === '/config') {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify(
          {
            id: this.#o.id,
            service: this.#o.service,
            control: this.#controlState,
            // A gateway's Gateway ports, by the Gateway's port number (`trellis load` finds a public service there).
            addresses: this.#gateway === undefined ? this.addresses : { ...this.addresses, gateway: this.gatewayAddresses() },
            // A gateway's certificate keys are not config to show (src/api/redact.ts).
            snapshot: redactSnapshot(this.#snapshot),
          },
          null,
          2,
        ),
      );
    } else {
      const err = new TrellisError('TRELLIS_E_NOT_FOUND', {
        reason: `no admin endpoint ${path}; try /metrics, /ready, /config, /identity, /balancing, /tap, POST /explain or POST /explain/inbound`,
      });
      res.statusCode = err.status;
      res.setHeader('content-type', 'application/json');
      res.setHeader('trellis-error', err.token);
      res.end(JSON.stringify(errorBody(err)));
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#dns?.close();
    this.tap.closeAll();
    this.#renewer?.stop();
    this.#rateLimits.stop();
    this.authn.close();
    this.#control?.stop();
    this.#gateway?.close();
    for (const s of this.#servers) s.close();
    for (const s of this.#sockets) s.destroy();
    this.#admin?.close();
    this.#admin?.closeAllConnections();
    this.#pool.close();
    this.#appPool.close();
    this.#h2pool?.close();
    await Promise.all([this.#accessLog.close(), this.tracer.close()]);
  }
}

/** Listens at `at`, or on the descriptor `inherited` holds for it (a socket the runner keeps across restarts). */
function listen(server: net.Server, at: HostPort, sockets?: Set<net.Socket>, inherited?: ReadonlyMap<string, number>): Promise<HostPort> {
  if (sockets) {
    server.on('connection', (s: net.Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const listening = (): void => {
      server.off('error', reject);
      const a = server.address() as net.AddressInfo;
      resolve({ host: at.host, port: a.port });
    };
    const fd = inherited?.get(listenKey(at.host, at.port));
    if (fd !== undefined) server.listen({ fd }, listening);
    else server.listen(at.port, at.host, listening);
  });
}

/** The egress gateway's SNI for a backend's connections (BackendSnapshot.tunnelSni), as proxyTcp takes it. */
function tunnelSniOf(b: BackendSnapshot | undefined): { servername?: string } {
  return typeof b?.tunnelSni === 'string' ? { servername: b.tunnelSni } : {};
}

/** Connect options of an originated TLS connection: HTTP/1.1, HTTP/2, or opaque bytes (TCP: no ALPN). */
interface OriginTls {
  readonly h1: tls.ConnectionOptions;
  readonly h2: tls.ConnectionOptions;
  readonly raw: tls.ConnectionOptions;
}

/** What an originated TLS connection's handshake needs watched: nothing beyond its error, which the codec reports (connect-failed, with the reason). */
const NO_WATCH = (): void => {};

/**
 * The ExternalService endpoints (by connectionKey) to reach with TLS this proxy originates
 * (BackendSnapshot.originateTls): connect options with the SNI and a context holding the
 * CA bundle, one context per bundle. Throws when a bundle does not load.
 */
function originTlsIndex(s: Snapshot): Map<string, OriginTls> {
  const index = new Map<string, OriginTls>();
  const contexts = new Map<string, tls.SecureContext>();
  for (const u of Object.values(s.upstreams)) {
    for (const b of Object.values(u.backends)) {
      const o = b.originateTls;
      if (o === undefined || typeof o.ca !== 'string' || typeof o.sni !== 'string') continue;
      let secureContext = contexts.get(o.ca);
      if (secureContext === undefined) contexts.set(o.ca, (secureContext = tls.createSecureContext({ ca: o.ca })));
      const base = { secureContext, servername: o.sni };
      for (const e of b.endpoints)
        index.set(connectionKey(e), { h1: { ...base, ALPNProtocols: ['http/1.1'] }, h2: { ...base, ALPNProtocols: ['h2'] }, raw: base });
    }
  }
  return index;
}

/**
 * The peer endpoints (`host:port`) to reach over mutual TLS, with the identities their
 * backend names: every backend of every upstream (and port) that says `mtls`.
 */
function peerMtlsIndex(s: Snapshot): Map<string, PeerMtls> {
  const index = new Map<string, PeerMtls>();
  for (const u of Object.values(s.upstreams)) {
    for (const one of [u, ...(u.ports ?? [])]) {
      for (const b of Object.values(one.backends)) {
        const m = b.mtls;
        if (m === undefined || !Array.isArray(m.identities)) continue;
        for (const e of b.endpoints) index.set(connectionKey(e), m);
      }
    }
  }
  return index;
}

/** The instances of every upstream service by the addresses they listen at: their sidecar's inbound, and their app. */
function addressIndex(s: Snapshot, compiled: ReadonlyMap<string, CompiledUpstream>): Map<string, AddressedInstance> {
  const index = new Map<string, AddressedInstance>();
  for (const [name, u] of Object.entries(s.upstreams)) {
    const service = compiled.get(name);
    // Each port of a multi-port service is addressed at its own listeners (its app port, its inbound).
    for (const one of u.ports ?? [u]) {
      const upstream = 'port' in one ? service?.ports?.get(one.port) : service;
      const whole = one.backends[u.service];
      if (upstream === undefined || whole === undefined || upstream.protocol === 'tcp') continue;
      for (const endpoint of whole.endpoints) {
        index.set(addressKey(endpoint.host, endpoint.port), { upstream, endpoint });
        if (endpoint.app !== undefined) index.set(addressKey(endpoint.app.host, endpoint.app.port), { upstream, endpoint });
      }
    }
  }
  return index;
}

/**
 * The snapshot's upstreams by host name, as Kubernetes DNS resolves names for a caller in
 * the snapshot's namespace: `svc` (its own namespace), `svc.ns`, `svc.ns.svc`,
 * `svc.ns.svc.<cluster domain>`. Built once per snapshot, so a request costs one lookup.
 */
function hostIndex(s: Snapshot, compiled: ReadonlyMap<string, CompiledUpstream>): Map<string, CompiledUpstream> {
  const caller = typeof s.namespace === 'string' ? s.namespace : DEFAULT_NAMESPACE;
  const domain = typeof s.clusterDomain === 'string' ? s.clusterDomain : DEFAULT_CLUSTER_DOMAIN;
  const index = new Map<string, CompiledUpstream>();
  for (const [key, upstream] of compiled) {
    const { name, namespace } = splitServiceKey(key);
    for (const host of serviceHostNames(name, namespace, caller, domain)) index.set(host, upstream);
  }
  // An ExternalService by its hosts (as written; a mesh service keeps a name both claim).
  for (const [key, u] of Object.entries(s.upstreams)) {
    const upstream = compiled.get(key);
    if (upstream === undefined || !Array.isArray(u.externalHosts)) continue;
    for (const host of u.externalHosts) if (typeof host === 'string' && !index.has(host)) index.set(host, upstream);
  }
  return index;
}

/** `host:port` as `addressOf` (routing/layers.ts) writes it: IPv6 in brackets, lower case. */
function addressKey(host: string, port: number): string {
  return host.includes(':') ? `[${host.toLowerCase()}]:${port}` : `${host}:${port}`;
}

/** Whether a Passthrough port's route (a TLSRoute hostname) takes a client's SNI; a client without one only a route without a hostname. */
function sniTakes(r: CompiledRoute, sni: string | undefined): boolean {
  if (r.hostExact === undefined && r.hostSuffix === undefined) return true;
  if (sni === undefined) return false;
  if (r.hostExact !== undefined) return r.hostExact === sni;
  return r.hostSuffix !== undefined && sni.length > r.hostSuffix.length && sni.endsWith(r.hostSuffix);
}

/** The JSON body of a `POST /explain` or `/explain/inbound`, bounded. */
async function explainBody(req: http.IncomingMessage, path: string): Promise<unknown> {
  if (req.method !== 'POST') throw new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path, allowed: 'POST', method: req.method });
  const body = await readBody(req, EXPLAIN_BODY_BYTES);
  try {
    return JSON.parse(body) as unknown;
  } catch {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `the body of POST ${path} is not JSON` });
  }
}
