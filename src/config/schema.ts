// The one schema source for Trellis configuration resources, written in TypeBox.
// From it come the validator (src/config/schema-errors.ts), the TypeScript types
// (the `Static<>` exports below), the JSON Schema (schema/trellis.schema.json) and,
// later, the CRDs. Change a resource here and nowhere else.
//
// Two kinds for now: `Mesh` (trellis.dev/v1alpha1), the services of one mesh, and the
// Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1), the GAMMA way: parentRefs
// name a mesh Service. Unknown fields are errors everywhere, so a typo is refused with
// its path instead of being silently ignored.
//
// `description` strings double as the "what would be right" half of error messages
// ("must be <description>"), so write them as noun phrases.
import { Type, type Static, type StringOptions, type TSchema } from '@sinclair/typebox';

/** apiVersion of the Trellis policy kinds. */
export const TRELLIS_API_VERSION = 'trellis.dev/v1alpha1';
/** apiVersion of the Gateway API kinds Trellis reads. */
export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';

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
} as const;

const strict = { additionalProperties: false } as const;

// ---------------------------------------------------------------------------
// Shared scalars
// ---------------------------------------------------------------------------

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** A DNS label (RFC 1123): the shape of service, version and mesh names. */
export const DnsLabel = Type.String({
  pattern: DNS_LABEL,
  maxLength: 63,
  description: "a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
});

const DnsSubdomain = Type.String({
  pattern: DNS_SUBDOMAIN,
  maxLength: 253,
  description: "a DNS name: dot-separated DNS labels of lower-case letters, digits and '-'",
});

/** `<n>ms|s|m|h`; converted to milliseconds by `parseDurationMs`. */
const duration = (options: StringOptions = {}) =>
  Type.String({ pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$', description: 'a duration such as 500ms, 2s, 1m or 1.5h', ...options });

const Port = Type.Integer({ minimum: 1, maximum: 65535, description: 'a TCP port number (1-65535)' });

const StringMap = Type.Record(Type.String(), Type.String(), {
  description: 'a mapping of names to strings',
});

// Numbers and booleans are accepted because `DEBUG: true` in YAML is not a string,
// and refusing it would only teach people to quote; the normalizer stringifies them.
const EnvMap = Type.Record(
  Type.String(),
  Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean' }),
  { description: 'a mapping of environment variable names to values' },
);

const httpPath = (options: StringOptions = {}) =>
  Type.String({ pattern: '^/', maxLength: 1024, description: 'a path starting with /', ...options });

// ---------------------------------------------------------------------------
// Metadata (Kubernetes style; the few fields a config file may carry)
// ---------------------------------------------------------------------------

const Metadata = Type.Object(
  {
    name: DnsSubdomain,
    namespace: Type.Optional(DnsLabel),
    labels: Type.Optional(StringMap),
    annotations: Type.Optional(StringMap),
  },
  strict,
);

// ---------------------------------------------------------------------------
// Mesh
// ---------------------------------------------------------------------------

const Upstream = Type.Union(
  [
    DnsLabel,
    Type.Object(
      {
        service: DnsLabel,
        // The sidecar's local listener for this upstream; otherwise one is picked.
        port: Type.Optional(Port),
      },
      strict,
    ),
  ],
  { description: 'a service name, or { service, port? }' },
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

const MeshService = Type.Object(
  {
    name: DnsLabel,
    protocol: Type.Optional(
      Type.Union([Type.Literal('http'), Type.Literal('http1'), Type.Literal('http2'), Type.Literal('grpc'), Type.Literal('tcp')], {
        description: 'http, http1, http2, grpc or tcp; when omitted the proxies detect it per connection (HTTP/1.1, HTTP/2, else opaque TCP). '
          + 'http1, http2 and grpc also say which HTTP the app speaks (http2 and grpc: HTTP/2 with prior knowledge only); with http or none, the inbound sidecar probes the app once. '
          + 'Server-first protocols (MySQL, SMTP) must be declared tcp.',
      }),
    ),
    // No command: an external process that the runner does not start.
    command: Type.Optional(Type.String({ minLength: 1 })),
    cwd: Type.Optional(Type.String({ minLength: 1 })),
    env: Type.Optional(EnvMap),
    port: Type.Optional(Port),
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
  },
  strict,
);

// The limits every proxy holds clients and peers to (src/proxy/limits.ts has the
// defaults and why each was chosen). Bounds keep a typo from disabling a limit.
const ProxyLimits = Type.Object(
  {
    maxRequestHeadBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1024 * 1024, description: 'the largest HTTP/1.1 request head in bytes (1 KiB to 1 MiB); default 16384' })),
    requestHeaderTimeout: Type.Optional(duration({ description: 'a duration such as 30s (the longest a request head may take to arrive; default 30s)' })),
    idleTimeout: Type.Optional(duration({ description: 'a duration such as 2m (how long a client connection with no request in progress stays open; default 120s)' })),
    h2MaxConcurrentStreams: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'concurrent streams per HTTP/2 connection (1 to 10000); default 100' })),
    h2MaxHeaderListBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1024 * 1024, description: 'the largest HTTP/2 header list in bytes (1 KiB to 1 MiB); default 16384' })),
    maxConnectionsPerListener: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'open client connections per proxy listener (1 to 1000000); default 10000' })),
    appProbeTimeout: Type.Optional(duration({ description: 'a duration such as 1s (how long the inbound sidecar waits for its app to answer an HTTP/2 probe; default 1s)' })),
  },
  { ...strict, description: 'limits every proxy holds connections to' },
);

// How the proxies the local runner starts keep their access logs (src/telemetry/access-log.ts
// has the defaults and why). Bounds keep a typo from turning rotation off or filling a disk.
const AccessLog = Type.Object(
  {
    keepQuery: Type.Optional(Type.Boolean({ description: 'true to log query strings as sent; default false (values replaced by REDACTED)' })),
    maxFileBytes: Type.Optional(Type.Integer({ minimum: 64 * 1024, maximum: 1024 * 1024 * 1024, description: 'the size in bytes at which a log file is rotated (64 KiB to 1 GiB); default 10485760' })),
    maxFiles: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'how many rotated files are kept (1 to 100); default 5' })),
  },
  { ...strict, description: 'how proxies keep their access logs' },
);

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
        proxyLimits: Type.Optional(ProxyLimits),
        accessLog: Type.Optional(AccessLog),
      },
      strict,
    ),
  },
  { ...strict, title: 'Mesh', description: 'The services of one Trellis mesh.' },
);

// ---------------------------------------------------------------------------
// HTTPRoute (Gateway API v1, the subset Trellis implements)
// ---------------------------------------------------------------------------

// `^$|...`: the core group is spelled "" and must stay valid.
const group = () =>
  Type.String({
    pattern: '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
    maxLength: 253,
    description: 'an API group: "" (core) or a DNS name',
    default: '',
  });

const kind = () =>
  Type.String({
    pattern: '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$',
    maxLength: 63,
    description: 'a kind such as Service',
    default: 'Service',
  });

const ObjectName = Type.String({ minLength: 1, maxLength: 253 });

// Unlike the Gateway API, whose parentRef defaults to a Gateway, a mesh route's
// parent is a Service (GAMMA), so that is the default here.
const ParentRef = Type.Object(
  {
    group: Type.Optional(group()),
    kind: Type.Optional(kind()),
    namespace: Type.Optional(DnsLabel),
    name: ObjectName,
  },
  strict,
);

const BackendRef = Type.Object(
  {
    group: Type.Optional(group()),
    kind: Type.Optional(kind()),
    name: ObjectName,
    namespace: Type.Optional(DnsLabel),
    port: Type.Optional(Port),
    weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 1 })),
  },
  strict,
);

// ---------------------------------------------------------------------------
// Route filters (Gateway API HTTPRouteFilter / GRPCRouteFilter). As in the Gateway
// API, `type` says which one of the config fields must be set; check-routes.ts checks
// that pairing (the CRD does it with CEL), so each mistake gets its own field path.
// ---------------------------------------------------------------------------

const HeaderName = Type.String({
  pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$",
  maxLength: 256,
  description: 'an HTTP header name',
});

const HTTPHeader = Type.Object({ name: HeaderName, value: Type.String({ maxLength: 4096, pattern: '^[^\\r\\n\\u0000]*$', description: 'a header value without CR, LF or NUL' }) }, strict);

const HeaderModifier = Type.Object(
  {
    set: Type.Optional(Type.Array(HTTPHeader, { maxItems: 16 })),
    add: Type.Optional(Type.Array(HTTPHeader, { maxItems: 16 })),
    remove: Type.Optional(Type.Array(HeaderName, { maxItems: 16 })),
  },
  strict,
);

const PathModifier = Type.Object(
  {
    type: Type.Union([Type.Literal('ReplaceFullPath'), Type.Literal('ReplacePrefixMatch')]),
    replaceFullPath: Type.Optional(httpPath()),
    replacePrefixMatch: Type.Optional(httpPath()),
  },
  strict,
);

const PreciseHostname = Type.String({
  pattern: DNS_SUBDOMAIN,
  maxLength: 253,
  description: 'a host name such as shop.example.com (no wildcard)',
});

const RequestRedirect = Type.Object(
  {
    scheme: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('https')])),
    hostname: Type.Optional(PreciseHostname),
    path: Type.Optional(PathModifier),
    port: Type.Optional(Port),
    statusCode: Type.Optional(Type.Union([Type.Literal(301), Type.Literal(302)], { default: 302 })),
  },
  strict,
);

const URLRewrite = Type.Object({ hostname: Type.Optional(PreciseHostname), path: Type.Optional(PathModifier) }, strict);

const RequestMirror = Type.Object(
  {
    backendRef: Type.Object(
      { group: Type.Optional(group()), kind: Type.Optional(kind()), name: ObjectName, namespace: Type.Optional(DnsLabel), port: Type.Optional(Port) },
      strict,
    ),
    percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    fraction: Type.Optional(
      Type.Object({ numerator: Type.Integer({ minimum: 0 }), denominator: Type.Optional(Type.Integer({ minimum: 1, default: 100 })) }, strict),
    ),
  },
  strict,
);

const HTTPRouteFilter = Type.Object(
  {
    type: Type.Union([
      Type.Literal('RequestHeaderModifier'), Type.Literal('ResponseHeaderModifier'), Type.Literal('RequestRedirect'),
      Type.Literal('URLRewrite'), Type.Literal('RequestMirror'),
    ]),
    requestHeaderModifier: Type.Optional(HeaderModifier),
    responseHeaderModifier: Type.Optional(HeaderModifier),
    requestRedirect: Type.Optional(RequestRedirect),
    urlRewrite: Type.Optional(URLRewrite),
    requestMirror: Type.Optional(RequestMirror),
  },
  strict,
);

// GRPCRoute has no redirect or URL rewrite: a gRPC client follows neither.
const GRPCRouteFilter = Type.Object(
  {
    type: Type.Union([Type.Literal('RequestHeaderModifier'), Type.Literal('ResponseHeaderModifier'), Type.Literal('RequestMirror')]),
    requestHeaderModifier: Type.Optional(HeaderModifier),
    responseHeaderModifier: Type.Optional(HeaderModifier),
    requestMirror: Type.Optional(RequestMirror),
  },
  strict,
);

const HTTPBackendRef = Type.Object(
  { ...BackendRef.properties, filters: Type.Optional(Type.Array(HTTPRouteFilter, { maxItems: 16 })) },
  strict,
);
const GRPCBackendRef = Type.Object(
  { ...BackendRef.properties, filters: Type.Optional(Type.Array(GRPCRouteFilter, { maxItems: 16 })) },
  strict,
);

const PathMatch = Type.Object(
  {
    type: Type.Optional(
      Type.Union([Type.Literal('Exact'), Type.Literal('PathPrefix'), Type.Literal('RegularExpression')], { default: 'PathPrefix' }),
    ),
    // A regular expression need not start with '/', so the value is checked by type in check-routes.ts.
    value: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, default: '/' })),
  },
  { ...strict, default: { type: 'PathPrefix', value: '/' } },
);

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

const HeaderMatch = Type.Object(
  {
    type: Type.Optional(
      Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' }),
    ),
    name: Type.String({
      pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$",
      maxLength: 256,
      description: 'an HTTP header name',
    }),
    value: Type.String({ maxLength: 4096 }),
  },
  strict,
);

const QueryParamMatch = Type.Object(
  {
    type: Type.Optional(
      Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' }),
    ),
    name: Type.String({ minLength: 1, maxLength: 256, pattern: '^[^&=#\\s]+$', description: 'a query parameter name (no &, =, # or spaces)' }),
    value: Type.String({ maxLength: 1024 }),
  },
  strict,
);

const HTTPRouteMatch = Type.Object(
  {
    path: Type.Optional(PathMatch),
    method: Type.Optional(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)))),
    headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })),
    queryParams: Type.Optional(Type.Array(QueryParamMatch, { maxItems: 16 })),
  },
  strict,
);

// Gateway API Duration (GEP-2257): up to four <number><unit> parts, e.g. 1m30s, 250ms.
const gatewayDuration = (description: string) =>
  Type.String({ pattern: '^([0-9]{1,5}(h|m|s|ms)){1,4}$', description: `a Gateway API duration such as 250ms, 10s or 1m30s (${description})` });

// Gateway API HTTPRouteTimeouts: `request` bounds the whole exchange, retries included;
// `backendRequest` bounds each attempt. "0s" disables a timeout.
const HTTPRouteTimeouts = Type.Object(
  {
    request: Type.Optional(gatewayDuration('the whole request, retries included')),
    backendRequest: Type.Optional(gatewayDuration('each attempt')),
  },
  strict,
);

// Gateway API HTTPRouteRetry (GEP-1731).
const HTTPRouteRetry = Type.Object(
  {
    codes: Type.Optional(
      Type.Array(Type.Integer({ minimum: 400, maximum: 599, description: 'an HTTP status code from 400 to 599' }), { maxItems: 32 }),
    ),
    attempts: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: 'a number of retries from 0 to 10' })),
    backoff: Type.Optional(gatewayDuration('the base of the exponential backoff')),
  },
  strict,
);

const SectionName = Type.String({
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  maxLength: 253,
  description: "a section name: lower-case letters, digits and '-'",
});

// A mesh route without parents or a rule without backends can only fail requests,
// so Trellis asks for them where the Gateway API leaves them optional.
// (A rule whose only job is a RequestRedirect needs none; check-routes.ts allows that.)
const HTTPRouteRule = Type.Object(
  {
    // Named so that policies can target one rule (targetRefs[].sectionName).
    name: Type.Optional(SectionName),
    matches: Type.Optional(
      Type.Array(HTTPRouteMatch, { maxItems: 64, default: [{ path: { type: 'PathPrefix', value: '/' } }] }),
    ),
    filters: Type.Optional(Type.Array(HTTPRouteFilter, { maxItems: 16 })),
    backendRefs: Type.Optional(Type.Array(HTTPBackendRef, { maxItems: 16 })),
    timeouts: Type.Optional(HTTPRouteTimeouts),
    retry: Type.Optional(HTTPRouteRetry),
  },
  strict,
);

/** Schema of the Gateway API `HTTPRoute` kind (the subset Trellis implements). */
export const HTTPRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_VERSION),
    kind: Type.Literal('HTTPRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        hostnames: Type.Optional(
          Type.Array(
            Type.String({
              pattern: '^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
              maxLength: 253,
              description: 'a host name such as shop.example.com or *.example.com',
            }),
            { maxItems: 16 },
          ),
        ),
        rules: Type.Array(HTTPRouteRule, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'HTTPRoute', description: 'Gateway API HTTPRoute; in the mesh its parentRefs name a Service.' },
);

// ---------------------------------------------------------------------------
// GRPCRoute (Gateway API v1) and TCPRoute (v1alpha2), the GAMMA way
// ---------------------------------------------------------------------------

/** apiVersion of the experimental Gateway API kinds (TCPRoute). */
export const GATEWAY_API_ALPHA_VERSION = 'gateway.networking.k8s.io/v1alpha2';

const GRPCMethodMatch = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' })),
    service: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    method: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  },
  strict,
);

const GRPCRouteMatch = Type.Object(
  { method: Type.Optional(GRPCMethodMatch), headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })) },
  strict,
);

const GRPCRouteRule = Type.Object(
  {
    matches: Type.Optional(Type.Array(GRPCRouteMatch, { maxItems: 64 })),
    filters: Type.Optional(Type.Array(GRPCRouteFilter, { maxItems: 16 })),
    backendRefs: Type.Array(GRPCBackendRef, { minItems: 1, maxItems: 16 }),
  },
  strict,
);

/** Schema of the Gateway API `GRPCRoute` kind. */
export const GRPCRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_VERSION),
    kind: Type.Literal('GRPCRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        hostnames: HTTPRouteSchema.properties.spec.properties.hostnames,
        rules: Type.Array(GRPCRouteRule, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'GRPCRoute', description: 'Gateway API GRPCRoute; in the mesh its parentRefs name an http Service.' },
);

// A TCP connection carries nothing to match on, so one rule is all a TCPRoute can use.
const TCPRouteRule = Type.Object({ backendRefs: Type.Array(BackendRef, { minItems: 1, maxItems: 16 }) }, strict);

/** Schema of the Gateway API `TCPRoute` kind (v1alpha2). */
export const TCPRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_ALPHA_VERSION),
    kind: Type.Literal('TCPRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        rules: Type.Array(TCPRouteRule, { minItems: 1, maxItems: 1 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'TCPRoute', description: 'Gateway API TCPRoute; in the mesh its parentRefs name a tcp Service.' },
);

// ---------------------------------------------------------------------------
// Resilience policies: faults, retry safety, retry budgets
// ---------------------------------------------------------------------------

/** apiVersion of the experimental Gateway API kinds Trellis reads. */
export const GATEWAY_X_API_VERSION = 'gateway.networking.x-k8s.io/v1alpha1';

// Gateway API LocalPolicyTargetReferenceWithSectionName: a route (optionally one of
// its rules by name) or a Service in the policy's namespace.
const PolicyTargetRef = Type.Object(
  {
    group: Type.String({
      pattern: '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
      maxLength: 253,
      description: 'an API group: "" (core, for a Service) or gateway.networking.k8s.io (for an HTTPRoute)',
    }),
    kind: kind(),
    name: ObjectName,
    sectionName: Type.Optional(SectionName),
  },
  strict,
);

const percent = () => Type.Integer({ minimum: 0, maximum: 100, description: 'a percentage from 0 to 100' });

const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
] as const;

/** The gRPC status codes by name, in numeric order (`UNAVAILABLE` is 14). */
export const GRPC_STATUS_CODES: readonly string[] = GRPC_CODES;

/** Schema of the Trellis `FaultInjection` kind: delays and aborts on a route or a service. */
export const FaultInjectionSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('FaultInjection'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        delay: Type.Optional(Type.Object({ fixedDelay: gatewayDuration('how long to hold the request'), percent: percent() }, strict)),
        // httpStatus and grpcStatus are both optional here so that "both given" is
        // reported by the route checks with a message, not as a union mismatch.
        abort: Type.Optional(
          Type.Object(
            {
              httpStatus: Type.Optional(Type.Integer({ minimum: 200, maximum: 599, description: 'an HTTP status code from 200 to 599' })),
              grpcStatus: Type.Optional(Type.Union(GRPC_CODES.map((c) => Type.Literal(c)), { description: `a gRPC status name (${GRPC_CODES.join(', ')})` })),
              percent: percent(),
            },
            strict,
          ),
        ),
      },
      strict,
    ),
  },
  { ...strict, title: 'FaultInjection', description: 'Trellis policy: delay or abort a share of the requests of an HTTPRoute (or one rule of it) or a Service.' },
);

/**
 * Schema of the Trellis `RetryPolicy` kind: what the Gateway API's retry stanza has no
 * word for, the safety limits of replaying a request.
 */
export const RetryPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('RetryPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        // Replaying a POST or PATCH can do its work twice; only the route's owner can say it is safe.
        retryNonIdempotent: Type.Optional(Type.Boolean({ default: false })),
        // Bodies up to this size are kept for a replay; bigger ones are streamed and not retried.
        maxBufferedBodyBytes: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024, default: 65536 })),
      },
      strict,
    ),
  },
  { ...strict, title: 'RetryPolicy', description: 'Trellis policy: whether the retries of an HTTPRoute (or one rule) may replay non-idempotent requests, and the body size kept for a replay.' },
);

/** Schema of the Gateway API `XBackendTrafficPolicy` kind (GEP-3388), its retryConstraint only. */
export const BackendTrafficPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_X_API_VERSION),
    kind: Type.Literal('XBackendTrafficPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        retryConstraint: Type.Optional(
          Type.Object(
            {
              budget: Type.Optional(
                Type.Object(
                  {
                    percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, default: 20, description: 'a percentage from 0 to 100' })),
                    interval: Type.Optional(gatewayDuration('the window over which requests count, 1s to 1h; default 10s')),
                  },
                  strict,
                ),
              ),
              minRetryRate: Type.Optional(
                Type.Object(
                  {
                    count: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, default: 10, description: 'a number of retries' })),
                    interval: Type.Optional(gatewayDuration('the period of count; default 1s')),
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
  { ...strict, title: 'XBackendTrafficPolicy', description: 'Gateway API BackendTrafficPolicy (experimental): the retry budget of a Service.' },
);

const count = (description: string, max = 1_000_000) => Type.Integer({ minimum: 0, maximum: max, description });

/** The balancers a BackendPolicy may name; PeakEWMA is the default. */
export const BALANCER_TYPES = ['PeakEWMA', 'LeastRequest', 'RoundRobin', 'Random', 'RingHash', 'Maglev'] as const;

/**
 * Schema of the Trellis `BackendPolicy` kind: how the sidecars calling a Service (or one
 * version of it, by sectionName) balance its endpoints and watch their health.
 */
export const BackendPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('BackendPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        loadBalancer: Type.Optional(
          Type.Object(
            {
              type: Type.Optional(Type.Union(BALANCER_TYPES.map((t) => Type.Literal(t)), { default: 'PeakEWMA', description: `a balancer (${BALANCER_TYPES.join(', ')})` })),
              // The affinity key of RingHash and Maglev; exactly one of the three.
              hashOn: Type.Optional(
                Type.Object(
                  {
                    header: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', maxLength: 256, description: 'a header name' })),
                    cookie: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', maxLength: 256, description: 'a cookie name' })),
                    source: Type.Optional(Type.Object({}, strict)),
                  },
                  strict,
                ),
              ),
            },
            strict,
          ),
        ),
        // Envoy's outlier_detection fields and defaults.
        outlierDetection: Type.Optional(
          Type.Object(
            {
              enabled: Type.Optional(Type.Boolean({ default: true })),
              consecutive5xx: Type.Optional(count('a number of responses in a row; 0 turns the detector off', 10_000)),
              consecutiveGatewayFailure: Type.Optional(count('a number of responses in a row; 0 turns the detector off', 10_000)),
              interval: Type.Optional(gatewayDuration('how often success rates are judged; default 10s')),
              baseEjectionTime: Type.Optional(gatewayDuration('the first ejection\'s length, multiplied by the times ejected; default 30s')),
              maxEjectionTime: Type.Optional(gatewayDuration('the longest ejection; default 300s')),
              maxEjectionPercent: Type.Optional(percent()),
              successRateMinimumHosts: Type.Optional(count('a number of endpoints')),
              successRateRequestVolume: Type.Optional(count('a number of requests per interval')),
              successRateStdevFactor: Type.Optional(count('Envoy\'s stdev_factor: the threshold is mean - factor/1000 x stdev')),
              failurePercentageThreshold: Type.Optional(percent()),
              failurePercentageMinimumHosts: Type.Optional(count('a number of endpoints')),
              failurePercentageRequestVolume: Type.Optional(count('a number of requests per interval')),
            },
            strict,
          ),
        ),
        // Envoy's circuit breakers that bound a request's work: over a limit, fail at once (503 overflow).
        circuitBreaker: Type.Optional(
          Type.Object(
            {
              maxConnections: Type.Optional(count('a number of connections open to the service; default 1024')),
              maxPendingRequests: Type.Optional(count('a number of requests waiting for a connection; default 1024')),
              maxRequests: Type.Optional(count('a number of requests in flight to the service; default 1024')),
              maxRetries: Type.Optional(count('a number of retries outstanding to the service; default 3')),
            },
            strict,
          ),
        ),
        // Where a version's requests go when none of its endpoints can take them: the
        // service's other versions (default), one named version, or nowhere (enabled: false).
        failover: Type.Optional(
          Type.Object(
            {
              enabled: Type.Optional(Type.Boolean({ default: true })),
              version: Type.Optional(Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63, description: 'a version name of the service' })),
            },
            strict,
          ),
        ),
        // Envoy's healthy_panic_threshold: below this share of usable endpoints, balance over all of them.
        panicThreshold: Type.Optional(percent()),
      },
      strict,
    ),
  },
  { ...strict, title: 'BackendPolicy', description: 'Trellis policy: the balancer and the passive health checks (outlier detection) of a Service, or of one version of it (sectionName).' },
);

/** Every kind Trellis reads, keyed by `<apiVersion>/<kind>`. */
export const RESOURCE_KINDS: Readonly<Record<string, { kind: string; apiVersion: string; schema: TSchema }>> = {
  [`${TRELLIS_API_VERSION}/Mesh`]: { kind: 'Mesh', apiVersion: TRELLIS_API_VERSION, schema: MeshSchema },
  [`${GATEWAY_API_VERSION}/HTTPRoute`]: { kind: 'HTTPRoute', apiVersion: GATEWAY_API_VERSION, schema: HTTPRouteSchema },
  [`${GATEWAY_API_VERSION}/GRPCRoute`]: { kind: 'GRPCRoute', apiVersion: GATEWAY_API_VERSION, schema: GRPCRouteSchema },
  [`${GATEWAY_API_ALPHA_VERSION}/TCPRoute`]: { kind: 'TCPRoute', apiVersion: GATEWAY_API_ALPHA_VERSION, schema: TCPRouteSchema },
  [`${TRELLIS_API_VERSION}/FaultInjection`]: { kind: 'FaultInjection', apiVersion: TRELLIS_API_VERSION, schema: FaultInjectionSchema },
  [`${TRELLIS_API_VERSION}/RetryPolicy`]: { kind: 'RetryPolicy', apiVersion: TRELLIS_API_VERSION, schema: RetryPolicySchema },
  [`${GATEWAY_X_API_VERSION}/XBackendTrafficPolicy`]: { kind: 'XBackendTrafficPolicy', apiVersion: GATEWAY_X_API_VERSION, schema: BackendTrafficPolicySchema },
  [`${TRELLIS_API_VERSION}/BackendPolicy`]: { kind: 'BackendPolicy', apiVersion: TRELLIS_API_VERSION, schema: BackendPolicySchema },
};

/** The kinds that attach to routes or services through targetRefs. */
export const POLICY_KINDS: ReadonlySet<string> = new Set(['FaultInjection', 'RetryPolicy', 'XBackendTrafficPolicy', 'BackendPolicy']);

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/** Kubernetes-style metadata: name, namespace, labels, annotations. */
export type Metadata = Static<typeof Metadata>;
/** A `Mesh` resource as written (after `Value.Default`, schema defaults are present). */
export type MeshResource = Static<typeof MeshSchema>;
/** The spec of a Mesh: includes and services. */
export type MeshSpec = MeshResource['spec'];

export type ProxyLimitsSpec = Static<typeof ProxyLimits>;

/** The Mesh's `spec.accessLog`. */
export type AccessLogSpec = Static<typeof AccessLog>;
/** One service of a Mesh as written; see `NormalizedService` for the filled-in form. */
export type MeshService = Static<typeof MeshService>;
/** One version of a service as written. */
export type ServiceVersion = Static<typeof ServiceVersion>;
/** A health check as written: exactly one of `http` / `tcp`, plus timing. */
export type HealthCheck = Static<typeof HealthCheck>;
/** An upstream as written: a service name or `{ service, port? }`. */
export type Upstream = Static<typeof Upstream>;
/** A Gateway API `HTTPRoute` (the subset Trellis implements). */
export type HTTPRouteResource = Static<typeof HTTPRouteSchema>;
/** The spec of an HTTPRoute: parentRefs, hostnames, rules. */
export type HTTPRouteSpec = HTTPRouteResource['spec'];
/** One rule: matches (ORed) and the weighted backends. */
export type HTTPRouteRule = Static<typeof HTTPRouteRule>;
/** One match: path, method and headers, all of which must hold. */
export type HTTPRouteMatch = Static<typeof HTTPRouteMatch>;
/** A path match (`Exact` or `PathPrefix`, default `PathPrefix /`). */
export type PathMatch = Static<typeof PathMatch>;
/** A header match (`Exact` or `RegularExpression`, default `Exact`). */
export type HeaderMatch = Static<typeof HeaderMatch>;
/** The HTTP methods a match may name. */
export type HTTPMethod = (typeof HTTP_METHODS)[number];
/** A query parameter match (`Exact` or `RegularExpression`, default `Exact`). */
export type QueryParamMatch = Static<typeof QueryParamMatch>;
/** An HTTPRoute filter as written: `type` plus the one config field it names. */
export type HTTPRouteFilter = Static<typeof HTTPRouteFilter>;
/** A Gateway API `GRPCRoute`. */
export type GRPCRouteResource = Static<typeof GRPCRouteSchema>;
/** A Gateway API `TCPRoute` (v1alpha2). */
export type TCPRouteResource = Static<typeof TCPRouteSchema>;
/** Any route kind Trellis reads. */
export type RouteResource = HTTPRouteResource | GRPCRouteResource | TCPRouteResource;
/** A backend: a mesh service `S` or one version of it, `S-<version>`. */
export type BackendRef = Static<typeof BackendRef>;
/** A route's parent: in the mesh, a Service (GAMMA). */
export type ParentRef = Static<typeof ParentRef>;
/** A `FaultInjection` policy as written. */
export type FaultInjectionResource = Static<typeof FaultInjectionSchema>;
/** A `RetryPolicy` as written (defaults applied). */
export type RetryPolicyResource = Static<typeof RetryPolicySchema>;
/** An `XBackendTrafficPolicy` as written. */
export type BackendTrafficPolicyResource = Static<typeof BackendTrafficPolicySchema>;
/** A `BackendPolicy` as written (defaults applied). */
export type BackendPolicyResource = Static<typeof BackendPolicySchema>;
/** Any of the policy kinds. */
export type PolicyResource = FaultInjectionResource | RetryPolicyResource | BackendTrafficPolicyResource | BackendPolicyResource;
/** A policy's target: a route (optionally one rule, by name) or a Service. */
export type PolicyTargetRef = Static<typeof PolicyTargetRef>;
