// The `Mesh` kind (trellis.dev/v1alpha1): the services of one mesh, their versions,
// health checks and upstreams, and the limits and access logs of its proxies.
import { ACCESS_LOG_FIELDS } from '../../api/views.js';
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, DnsSubdomain, duration, httpPath, Metadata, Port, strict, StringMap, TRELLIS_API_VERSION } from './common.js';
import { Identity } from './identity.js';
import { MtlsModeSchema } from './peer-authentication.js';

/**
 * Defaults of the Mesh kind. The schema annotates them (`default`) for editors and
 * the JSON Schema; the normalizer (src/config/normalize.ts) applies the same values.
 */
export const MESH_DEFAULTS = {
  /** No protocol declared: each connection's first bytes decide (HTTP/1.1, HTTP/2 or opaque TCP). */
  protocol: 'detect',
  replicas: 1,
  healthInterval: '2s',
  healthTimeout: '1s',
  healthyThreshold: 1,
  unhealthyThreshold: 2,
  versionName: 'default',
  /** As on Kubernetes: a service that names no namespace is in `default`. */
  namespace: 'default',
  clusterDomain: 'cluster.local',
} as const;

/**
 * Ports whose protocols don't go with detection, served as `tcp` when a service on one
 * declares no protocol: a client of a server-speaks-first protocol (SMTP 25 and 587,
 * MySQL 3306) waits for the server, and detection, which waits for the client's first
 * bytes, would hold every connection for its whole timeout; the others (Galera 4444,
 * Postgres 5432, Redis 6379, Elasticsearch 9300, Memcached 11211) gain nothing from it.
 * Linkerd's default opaque ports, the same list (linkerd.io, "Protocol detection").
 */
export const OPAQUE_PORTS: ReadonlySet<number> = new Set([25, 587, 3306, 4444, 5432, 6379, 9300, 11211]);

/** The protocol of a service port that declares none: `tcp` on an OPAQUE_PORTS port, else detection. */
export function defaultProtocol(port: number | undefined): 'tcp' | 'detect' {
  return port !== undefined && OPAQUE_PORTS.has(port) ? 'tcp' : MESH_DEFAULTS.protocol;
}

// Numbers and booleans are accepted because `DEBUG: true` in YAML is not a string,
// and refusing it would only teach people to quote; the normalizer stringifies them.
const EnvMap = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean' }), {
  description: 'a mapping of environment variable names to values',
});

// `svc` is a service in the caller's own namespace, `svc.ns` one in namespace ns.
const UpstreamName = Type.String({
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$',
  maxLength: 127,
  description: "a service name (in the calling service's namespace) or name.namespace",
});

const Upstream = Type.Union(
  [
    UpstreamName,
    Type.Object(
      {
        service: DnsLabel,
        // The sidecar's local listener for this upstream; otherwise one is picked.
        port: Type.Optional(Port),
        // Absent: the calling service's own namespace.
        namespace: Type.Optional(DnsLabel),
        // Which port of a service with a `ports:` list the listener reaches; absent: its first.
        // (`port` already meant the local listener when services got ports.)
        servicePort: Type.Optional(Port),
      },
      strict,
    ),
  ],
  { description: 'a service name or name.namespace, or { service, namespace?, port?, servicePort? }' },
);

const healthTiming = {
  interval: Type.Optional(duration({ default: MESH_DEFAULTS.healthInterval })),
  timeout: Type.Optional(duration({ default: MESH_DEFAULTS.healthTimeout })),
  healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, default: MESH_DEFAULTS.healthyThreshold })),
  unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, default: MESH_DEFAULTS.unhealthyThreshold })),
};

// Two closed shapes rather than one object with two optional probes: "exactly one
// of http / tcp" is then part of the schema (and of the JSON Schema) instead of a
// hand-written check.
const HealthCheck = Type.Union(
  [
    Type.Object(
      {
        http: Type.Object(
          {
            path: httpPath(),
            // Absent: any 2xx is healthy.
            status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
          },
          strict,
        ),
        ...healthTiming,
      },
      strict,
    ),
    Type.Object({ tcp: Type.Object({}, strict), ...healthTiming }, strict),
  ],
  {
    description:
      'a health check with exactly one probe, http: { path, status? } or tcp: {}, plus optional interval, timeout, healthyThreshold, unhealthyThreshold',
    // No `default` here: TypeBox merges object defaults into given values, which
    // would add `tcp` to every http check. A missing health check means a tcp one
    // with default timing (see normalize.ts).
  },
);

const ServiceVersion = Type.Object(
  {
    name: DnsLabel,
    labels: Type.Optional(StringMap),
    // Defaults to the service's replicas.
    replicas: Type.Optional(Type.Integer({ minimum: 0 })),
    command: Type.Optional(Type.String({ minLength: 1 })),
    env: Type.Optional(EnvMap),
  },
  strict,
);

const ServiceProtocol = Type.Union([Type.Literal('http'), Type.Literal('http1'), Type.Literal('http2'), Type.Literal('grpc'), Type.Literal('tcp')], {
  description:
    'http, http1, http2, grpc or tcp; when omitted the proxies detect it per connection (HTTP/1.1, HTTP/2, else opaque TCP). ' +
    'http1, http2 and grpc also say which HTTP the app speaks (http2 and grpc: HTTP/2 with prior knowledge only); with http or none, the inbound sidecar probes the app once. ' +
    'Server-first protocols (MySQL, SMTP) must be declared tcp.',
});

/** The most ports one service may list: a Kubernetes Service rarely has more than a handful. */
export const MAX_SERVICE_PORTS = 32;

// One port of a multi-port service, as a Kubernetes Service port: the number callers
// address (`Host: svc:PORT`), the app port behind it, and how it speaks.
const ServicePort = Type.Object(
  {
    // Required once a service lists more than one port (check-mesh.ts), as Kubernetes requires.
    name: Type.Optional(DnsLabel),
    port: Port,
    appPort: Type.Optional(Port),
    protocol: Type.Optional(ServiceProtocol),
  },
  strict,
);

const MeshService = Type.Object(
  {
    name: DnsLabel,
    protocol: Type.Optional(ServiceProtocol),
    // No command: an external process that the runner does not start.
    command: Type.Optional(Type.String({ minLength: 1 })),
    cwd: Type.Optional(Type.String({ minLength: 1 })),
    env: Type.Optional(EnvMap),
    port: Type.Optional(Port),
    ports: Type.Optional(
      Type.Array(ServicePort, {
        minItems: 1,
        maxItems: MAX_SERVICE_PORTS,
        description:
          'the service ports callers address (Host: svc:PORT; no port = 80), each { name?, port, appPort?, protocol? }; without it the service has one port (port and protocol above) and any port in Host reaches it',
      }),
    ),
    replicas: Type.Optional(Type.Integer({ minimum: 0, default: MESH_DEFAULTS.replicas })),
    public: Type.Optional(Type.Object({ port: Type.Optional(Port) }, strict)),
    requires: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    optional: Type.Optional(Type.Boolean()),
    upstreams: Type.Optional(Type.Array(Upstream)),
    health: Type.Optional(HealthCheck),
    upgrades: Type.Optional(
      Type.Array(
        Type.String({
          pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+(/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?$",
          maxLength: 64,
          description: 'an HTTP Upgrade protocol such as websocket or SPDY/3.1',
        }),
        {
          maxItems: 16,
          description:
            'the HTTP/1.1 upgrade protocols the service accepts through the mesh (byte tunnels after 101, which routes no longer see); default [websocket], [] for none; h2c is never tunnelled',
        },
      ),
    ),
    versions: Type.Optional(Type.Array(ServiceVersion, { minItems: 1 })),
    // Last, so the fields people use most are listed first in "allowed here" messages.
    // No schema default: an absent namespace stays absent in the resource as written.
    namespace: Type.Optional({ ...DnsLabel, description: `${DnsLabel.description} (the service's namespace; default ${MESH_DEFAULTS.namespace})` }),
  },
  strict,
);

// The limits every proxy holds clients and peers to (src/proxy/listeners/limits.ts has the
// defaults and why each was chosen). Bounds keep a typo from disabling a limit.
const ProxyLimits = Type.Object(
  {
    maxRequestHeadBytes: Type.Optional(
      Type.Integer({ minimum: 1024, maximum: 1024 * 1024, description: 'the largest HTTP/1.1 request head in bytes (1 KiB to 1 MiB); default 16384' }),
    ),
    requestHeaderTimeout: Type.Optional(duration({ description: 'a duration such as 30s (the longest a request head may take to arrive; default 30s)' })),
    idleTimeout: Type.Optional(
      duration({ description: 'a duration such as 2m (how long a client connection with no request in progress stays open; default 120s)' }),
    ),
    h2MaxConcurrentStreams: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 10000, description: 'concurrent streams per HTTP/2 connection (1 to 10000); default 100' }),
    ),
    h2MaxHeaderListBytes: Type.Optional(
      Type.Integer({ minimum: 1024, maximum: 1024 * 1024, description: 'the largest HTTP/2 header list in bytes (1 KiB to 1 MiB); default 16384' }),
    ),
    maxConnectionsPerListener: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'open client connections per proxy listener (1 to 1000000); default 10000' }),
    ),
    appProbeTimeout: Type.Optional(
      duration({ description: 'a duration such as 1s (how long the inbound sidecar waits for its app to answer an HTTP/2 probe; default 1s)' }),
    ),
    tcpConnectTimeout: Type.Optional(
      duration({
        description: 'a duration such as 10s (how long a TCP connection through the mesh waits for its upstream to connect, TLS included; default 10s)',
      }),
    ),
    tcpIdleTimeout: Type.Optional(
      duration({ description: 'a duration such as 1h (a TCP connection through the mesh with no bytes either way is closed after this long; default 1h)' }),
    ),
    maxConcurrentScrapes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 64,
        description: "/metrics responses a proxy's admin server sends at once (1 to 64); more are answered 503 with Retry-After; default 8",
      }),
    ),
    scrapeTimeout: Type.Optional(
      duration({ description: 'a duration such as 30s (a /metrics response not fully sent by then has its connection closed; default 30s)' }),
    ),
  },
  { ...strict, description: 'limits every proxy holds connections to' },
);

// How the proxies the local runner starts keep their access logs (src/telemetry/access-log.ts
// has the defaults and why). Bounds keep a typo from turning rotation off or filling a disk.
const AccessLog = Type.Object(
  {
    keepQuery: Type.Optional(Type.Boolean({ description: 'true to log query strings as sent; default false (values replaced by REDACTED)' })),
    maxFileBytes: Type.Optional(
      Type.Integer({
        minimum: 64 * 1024,
        maximum: 1024 * 1024 * 1024,
        description: 'the size in bytes at which a log file is rotated (64 KiB to 1 GiB); default 10485760',
      }),
    ),
    maxFiles: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'how many rotated files are kept (1 to 100); default 5' })),
    fields: Type.Optional(
      Type.Array(Type.Union(ACCESS_LOG_FIELDS.map((f) => Type.Literal(f))), {
        minItems: 1,
        uniqueItems: true,
        description: `the fields each line carries, from: ${ACCESS_LOG_FIELDS.join(', ')} (ts is always written); default: all of them`,
      }),
    ),
  },
  { ...strict, description: 'how proxies keep their access logs' },
);

// Distributed tracing (src/telemetry/tracing/): the share of new traces the proxies sample
// (Istio's Telemetry API calls it randomSamplingPercentage; 1% is its default and ours),
// and where spans go. Bounds keep a typo from holding a proxy's memory or turning export off.
const Tracing = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'false: the proxies make no spans and pass trace headers through; default true' })),
    samplingPercentage: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 100,
        description: 'percent of new traces sampled (0 to 100); default 1. Requests that fail are exported whatever it is',
      }),
    ),
    trustIncomingSampling: Type.Optional(
      Type.Boolean({
        description:
          "true: a Gateway keeps the sampled flag of a request from outside (traceparent, B3), so any client can ask for its request to be traced; default false: the edge samples at samplingPercentage, keeping the client's trace id. Sidecars always keep their mesh callers' decision",
      }),
    ),
    collector: Type.Optional(
      Type.Object(
        {
          endpoint: Type.String({
            pattern: '^https?://[^\\s]+$',
            maxLength: 2048,
            description: "an OTLP/HTTP traces URL such as http://127.0.0.1:4318/v1/traces; default: the control plane's own receiver",
          }),
        },
        { ...strict, description: 'where the proxies export spans (OTLP/HTTP, JSON)' },
      ),
    ),
    maxQueueSpans: Type.Optional(
      Type.Integer({
        minimum: 16,
        maximum: 1_000_000,
        description: 'spans a proxy queues at most; more are dropped and counted (16 to 1000000); default 2048',
      }),
    ),
    batchSpans: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'spans per export request (1 to 100000); default 512' })),
    flushInterval: Type.Optional(duration({ description: 'a duration such as 1s (how often a partial batch is sent); default 1s' })),
    exportTimeout: Type.Optional(duration({ description: 'a duration such as 10s (an export request not answered by then is dropped); default 10s' })),
  },
  { ...strict, description: 'distributed tracing: sampling and where spans go' },
);

const Telemetry = Type.Object({ tracing: Type.Optional(Tracing) }, { ...strict, description: 'what the proxies observe and where it goes' });

/** Schema of the `Mesh` kind. */
export const MeshSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('Mesh'),
    metadata: Metadata,
    spec: Type.Object(
      {
        include: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
        services: Type.Array(MeshService),
        // The domain of `svc.ns.svc.<clusterDomain>` host names.
        clusterDomain: Type.Optional({
          ...DnsSubdomain,
          description: `${DnsSubdomain.description} (the cluster domain of svc.ns.svc.<domain> host names; default ${MESH_DEFAULTS.clusterDomain})`,
        }),
        proxyLimits: Type.Optional(ProxyLimits),
        accessLog: Type.Optional(AccessLog),
        identity: Type.Optional(Identity),
        telemetry: Type.Optional(Telemetry),
        // The mesh-wide PeerAuthentication mode: what every inbound listener takes unless a
        // PeerAuthentication says otherwise (default STRICT: mutual TLS between sidecars).
        mtls: Type.Optional(
          Type.Object({ mode: MtlsModeSchema }, { ...strict, description: 'the mesh-wide mTLS mode: { mode: STRICT | PERMISSIVE | DISABLE }; default STRICT' }),
        ),
        // What leaves the mesh (Istio's meshConfig.outboundTrafficPolicy): calls to hosts no
        // service nor ExternalService declares, and the egress gateway external calls go through.
        outboundTrafficPolicy: Type.Optional(
          Type.Object(
            {
              mode: Type.Optional(
                Type.Union([Type.Literal('ALLOW_ANY'), Type.Literal('REGISTRY_ONLY')], {
                  description:
                    'ALLOW_ANY (default: an undeclared host is answered 503 unknown-service, as before) or REGISTRY_ONLY (403 egress-refused, counted and logged)',
                }),
              ),
              egressGateway: Type.Optional(
                Type.Object(
                  {
                    name: {
                      ...DnsLabel,
                      description:
                        'the egress gateway proxy (`trellis proxy --gateway --egress ... --service <name>`); every ExternalService call goes through it',
                    },
                    port: Type.Optional({ ...Port, description: 'where `trellis up` opens its mTLS listener (default: a free port)' }),
                  },
                  strict,
                ),
              ),
            },
            strict,
          ),
        ),
      },
      strict,
    ),
  },
  { ...strict, title: 'Mesh', description: 'The services of one Trellis mesh.' },
);

/** A `Mesh` resource as written (after `Value.Default`, schema defaults are present). */
export type MeshResource = Static<typeof MeshSchema>;
/** The spec of a Mesh: includes and services. */
export type MeshSpec = MeshResource['spec'];

export type ProxyLimitsSpec = Static<typeof ProxyLimits>;

/** The Mesh's `spec.telemetry.tracing`. */
export type TracingSpec = Static<typeof Tracing>;

/** The Mesh's `spec.accessLog`. */
export type AccessLogSpec = Static<typeof AccessLog>;
/** One service of a Mesh as written; see `NormalizedService` for the filled-in form. */
export type MeshService = Static<typeof MeshService>;
/** One port of a service's `ports:` list as written. */
export type ServicePort = Static<typeof ServicePort>;
/** One version of a service as written. */
export type ServiceVersion = Static<typeof ServiceVersion>;
/** A health check as written: exactly one of `http` / `tcp`, plus timing. */
export type HealthCheck = Static<typeof HealthCheck>;
/** An upstream as written: a service name, `name.namespace`, or `{ service, namespace?, port?, servicePort? }`. */
export type Upstream = Static<typeof Upstream>;
