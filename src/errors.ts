// Every error Trellis can report, in one table: a stable code, the short token that
// goes in the `trellis-error` response header, the HTTP status a proxy answers with,
// and a message template that says what happened and what to do.
// Retry, failover and tests decide on `code`, never on message text.

export interface ErrorSpec {
  /** Short kebab-case token, sent as the `trellis-error` header value. */
  readonly token: string;
  /** HTTP status when this error ends a request at a proxy edge. */
  readonly status: number;
  /** Message template; `{name}` placeholders are filled from params. */
  readonly message: string;
  /**
   * Response header fields the answer carries beside `trellis-error` (lower-case name →
   * value template, filled from params as `message` is): a 401's `WWW-Authenticate`
   * (RFC 6750). Params that fill them must be values the proxy chose, never request text.
   */
  readonly headers?: Readonly<Record<string, string>>;
}

export const ERRORS = {
  // data plane
  TRELLIS_E_BAD_REQUEST: { token: 'bad-request', status: 400, message: 'malformed HTTP request: {reason}' },
  TRELLIS_E_HEAD_TOO_LARGE: { token: 'head-too-large', status: 431, message: 'request head exceeds {limit} bytes' },
  TRELLIS_E_HTTP_ON_HTTPS_PORT: {
    token: 'http-on-https-port',
    status: 400,
    message: 'port {port} of this gateway speaks HTTPS, and this request came in plain HTTP; use https://',
  },
  TRELLIS_E_HEADER_TIMEOUT: {
    token: 'header-timeout',
    status: 408,
    message: "the request head did not arrive within {ms} ms of its first byte (the proxy's request header timeout); send it whole",
  },
  TRELLIS_E_UPGRADE_REFUSED: {
    token: 'upgrade-refused',
    status: 403,
    message:
      'service "{service}" does not accept "{protocol}" upgrades through the mesh; list the protocol in the service\'s upgrades in the mesh file (WebSocket is accepted by default, h2c never)',
  },
  TRELLIS_E_NO_CONFIG: {
    token: 'no-config',
    status: 503,
    message: 'the proxy has not received its configuration from the control plane yet; check that `trellis control` is running',
  },
  TRELLIS_E_UNKNOWN_SERVICE: {
    token: 'unknown-service',
    status: 503,
    message: 'no service named "{service}" is reachable from this proxy; check the name and the upstreams of the calling service',
  },
  TRELLIS_E_UNKNOWN_PORT: {
    token: 'unknown-port',
    status: 503,
    message: 'service "{service}" has no port {port} (its ports: {ports}); address one of them as Host: {service}:PORT (no port means 80)',
  },
  TRELLIS_E_UNKNOWN_ADDRESS: {
    token: 'unknown-address',
    status: 403,
    message: 'no instance of the mesh listens at {address}; this proxy forwards only to the services of the mesh and their instances',
  },
  TRELLIS_E_EGRESS_REFUSED: {
    token: 'egress-refused',
    status: 403,
    message:
      'no service of the mesh nor ExternalService declares host "{host}", and the mesh refuses calls to undeclared hosts (outboundTrafficPolicy REGISTRY_ONLY); declare it with an ExternalService',
  },
  TRELLIS_E_FORBIDDEN: {
    token: 'forbidden',
    status: 403,
    message:
      'service "{service}" does not let {principal} make this request: an AuthorizationPolicy refuses it (the access log of the service\'s sidecar names the policy)',
  },
  TRELLIS_E_NO_ROUTE: { token: 'no-route', status: 404, message: 'no route of service "{service}" matches {method} {path}' },
  TRELLIS_E_BACKEND_NOT_FOUND: { token: 'backend-not-found', status: 500, message: 'route {route} names backend "{backend}", which does not exist' },
  TRELLIS_E_INVALID_BACKEND: {
    token: 'invalid-backend',
    status: 500,
    message: 'route {route} sent this request to backendRef "{backend}", which is invalid ({reason}): {detail}',
  },
  TRELLIS_E_NO_ENDPOINTS: { token: 'no-endpoints', status: 503, message: 'backend "{backend}" has no healthy endpoint' },
  TRELLIS_E_CONNECT: { token: 'connect-failed', status: 502, message: 'could not connect to {address}: {reason}' },
  TRELLIS_E_UPSTREAM_RESET: { token: 'upstream-reset', status: 502, message: 'the connection to {address} closed before a complete response' },
  TRELLIS_E_UPSTREAM_PROTOCOL: { token: 'upstream-protocol', status: 502, message: 'malformed response from {address}: {reason}' },
  TRELLIS_E_APP_UNAVAILABLE: { token: 'app-unavailable', status: 503, message: 'the local application at {address} refused the connection: {reason}' },
  TRELLIS_E_APP_PROTOCOL: { token: 'app-protocol', status: 502, message: 'the local application at {address} speaks {speaks} only, and {reason}' },
  TRELLIS_E_TIMEOUT: { token: 'timeout', status: 504, message: 'no response from {address} within {ms} ms' },
  TRELLIS_E_REQUEST_TIMEOUT: {
    token: 'request-timeout',
    status: 504,
    message: 'route {route} was not answered within its request timeout of {ms} ms (timeouts.request, retries included)',
  },
  TRELLIS_E_OVERFLOW: {
    token: 'overflow',
    status: 503,
    message: 'the circuit breaker of {service} is open: {limit} ({max}) reached; the request was not sent (BackendPolicy circuitBreaker)',
  },
  TRELLIS_E_FAULT_ABORT: {
    token: 'fault-abort',
    status: 503,
    message: 'aborted by the FaultInjection policy {policy} (the status is the one the policy names)',
  },
  TRELLIS_E_RATE_LIMITED: {
    token: 'rate-limited',
    status: 429,
    message: 'refused by the RateLimitPolicy {policy} (limit {limit}); retry after {retryAfter} s (the Retry-After and RateLimit headers say when)',
  },
  TRELLIS_E_JWT_INVALID: {
    token: 'invalid-token',
    status: 401,
    message:
      "the request's JWT was refused ({reason}): {description}; send a token that an issuer of the service's RequestAuthentication signed, or none (an AuthorizationPolicy decides about requests without one)",
    // RFC 6750 §3: the error code `invalid_token`; the description is one of the proxy's fixed texts.
    headers: { 'www-authenticate': 'Bearer realm="{realm}", error="invalid_token", error_description="{description}"' },
  },
  // configuration
  TRELLIS_E_CONFIG_INVALID: { token: 'config-invalid', status: 400, message: '{file}: {details}' },
  // control plane and CLI
  TRELLIS_E_SNAPSHOT_REJECTED: { token: 'snapshot-rejected', status: 500, message: 'snapshot {version} rejected: {reason}' },
  TRELLIS_E_CONTROL_UNREACHABLE: {
    token: 'control-unreachable',
    status: 503,
    message: 'cannot reach the control plane at {url}: {reason}; is `trellis control` (or `trellis up`) running?',
  },
  TRELLIS_E_UNAUTHORIZED: { token: 'unauthorized', status: 401, message: 'the control plane requires a join token: {reason}' },
  TRELLIS_E_CREDENTIAL_REFUSED: {
    token: 'credential-refused',
    status: 401,
    message:
      'the control plane refused {kind} {id} of service "{service}": {reason}; a proxy needs the bootstrap credential the runner gives its instance ($TRELLIS_CREDENTIAL, or `trellis identity credential`)',
  },
  TRELLIS_E_TOKEN_REFUSED: {
    token: 'token-refused',
    status: 401,
    message:
      'the control plane refused {kind} {id} of service "{service}": {reason}; on Kubernetes a proxy joins with its projected ServiceAccount token for audience trellis (`trellis proxy --credential-file`)',
  },
  TRELLIS_E_KUBERNETES_UNLISTED: {
    token: 'kubernetes-unlisted',
    status: 503,
    message:
      'the control plane cannot serve {kind} {id} of service "{service}" yet: {reason}; it serves no proxy before it has listed every security policy kind (a snapshot without them would allow what they deny); the proxy retries, and `trellis check` names the cause',
  },
  TRELLIS_E_CSR_INVALID: { token: 'csr-invalid', status: 400, message: 'certificate signing request refused: {reason}' },
  TRELLIS_E_CA_INVALID: { token: 'ca-invalid', status: 500, message: 'the mesh CA cannot be used: {reason}' },
  TRELLIS_E_CA_UNAVAILABLE: { token: 'ca-unavailable', status: 503, message: 'the CA cannot issue certificates: {reason}' },
  TRELLIS_E_ADMIN_UNREACHABLE: { token: 'admin-unreachable', status: 502, message: 'GET {url} failed: {reason}' },
  TRELLIS_E_NOT_FOUND: { token: 'not-found', status: 404, message: '{reason}' },
  TRELLIS_E_USAGE: { token: 'usage', status: 400, message: '{reason}' },
  TRELLIS_E_NO_FREE_PORT: { token: 'no-free-port', status: 503, message: 'could not find a free loopback port in {tries} tries' },
  TRELLIS_E_LISTEN_FAILED: {
    token: 'listen-failed',
    status: 500,
    message: 'could not open the listeners of {what} at {addresses}: {reason}; is something else listening there (another `trellis up`)?',
  },
  TRELLIS_E_ISOLATION_UNAVAILABLE: {
    token: 'isolation-unavailable',
    status: 500,
    message: '`trellis up --isolate` needs {missing}; without --isolate the mesh runs on loopback and needs none of it',
  },
  TRELLIS_E_ISOLATION_FAILED: {
    token: 'isolation-failed',
    status: 500,
    message: 'setting up the isolated network failed at `{command}`: {reason}; `trellis up --isolate-cleanup` removes what Trellis left behind',
  },
  // load generator
  TRELLIS_E_LOAD_SCHEDULE: { token: 'load-schedule', status: 500, message: 'the load schedule broke off: {reason}' },
  // the control plane's HTTP API (admin API and the proxy stream's upgrade)
  TRELLIS_E_METHOD_NOT_ALLOWED: { token: 'method-not-allowed', status: 405, message: '{path} takes {allowed}, not {method}' },
  TRELLIS_E_ORIGIN_REFUSED: {
    token: 'origin-refused',
    status: 403,
    message: 'the admin API does not take changes from web pages (the request has an Origin header)',
  },
  TRELLIS_E_ADMIN_CREDENTIAL_MISSING: {
    token: 'admin-credential-missing',
    status: 401,
    message:
      "the control plane's admin API needs its token ({reason}): send Authorization: Bearer <token>; the CLI reads it from the control plane's state folder (<state>/control/admin-token), --admin-token-file or $TRELLIS_ADMIN_TOKEN",
  },
  TRELLIS_E_ADMIN_CREDENTIAL_REFUSED: {
    token: 'admin-credential-refused',
    status: 403,
    message:
      'the control plane refused the admin credential ({reason}); use the token in the state folder of the control plane at this address (<state>/control/admin-token), or its --admin-token-file',
  },
  TRELLIS_E_ADMIN_LOOPBACK_ONLY: {
    token: 'admin-loopback-only',
    status: 403,
    message: "a proxy's admin server shows {path} only on this machine (loopback); /metrics and /ready are open to any address",
  },
  // the dashboard (src/control/dashboard/)
  TRELLIS_E_DASHBOARD_LOGIN_REQUIRED: {
    token: 'dashboard-login-required',
    status: 401,
    message: 'the dashboard needs a login: open the link `trellis up` printed ({reason})',
  },
  TRELLIS_E_DASHBOARD_CSRF: {
    token: 'dashboard-csrf',
    status: 403,
    message: "the dashboard takes changes only from its own page (the x-trellis-dashboard header, and an Origin naming the control plane's address)",
  },
  TRELLIS_E_BODY_TOO_LARGE: { token: 'body-too-large', status: 413, message: 'the request body is over {limit} bytes' },
  TRELLIS_E_UPGRADE_REQUIRED: { token: 'upgrade-required', status: 426, message: 'the proxy stream needs Connection: Upgrade and Upgrade: {protocol}' },
  // the control plane's OTLP receiver (POST /v1/traces)
  TRELLIS_E_OTLP_INVALID: { token: 'otlp-invalid', status: 400, message: 'the body is not an OTLP/HTTP JSON ExportTraceServiceRequest: {reason}' },
  TRELLIS_E_OTLP_MEDIA_TYPE: {
    token: 'otlp-media-type',
    status: 415,
    message: 'the traces receiver takes OTLP/HTTP JSON (content-type: application/json), not {type}; set your exporter to http/json',
  },
  // traffic shifting (trellis route weights, trellis canary)
  TRELLIS_E_WEIGHTS_INVALID: { token: 'weights-invalid', status: 400, message: 'cannot set the weights of {service}: {reason}' },
  TRELLIS_E_WEIGHTS_REFUSED: { token: 'weights-refused', status: 409, message: 'the weights of {service} were not changed: {reason}' },
  TRELLIS_E_ACK_TIMEOUT: {
    token: 'ack-timeout',
    status: 504,
    message: 'the new weights of {service} are in the config, but {proxies} did not acknowledge them within {ms} ms; see `trellis status`',
  },
  // a proxy's admin server: tap and explain (trellis tap, trellis explain)
  TRELLIS_E_TAP_LIMIT: {
    token: 'tap-limit',
    status: 503,
    message: 'this proxy already streams {limit} taps, its limit; end one (or wait for one to end) and try again',
  },
  TRELLIS_E_TAP_FILTER: { token: 'tap-filter', status: 400, message: 'bad tap filter: {reason}' },
  TRELLIS_E_APP_PROBE_LIMIT: {
    token: 'app-probe-limit',
    status: 503,
    message: "this proxy already runs {limit} probes of its app, its limit (--app-probe-concurrency); the kubelet's next probe will be answered",
  },
  TRELLIS_E_SCRAPE_LIMIT: {
    token: 'scrape-limit',
    status: 503,
    message: 'this proxy already sends {limit} /metrics responses, its limit (proxyLimits.maxConcurrentScrapes); scrape again in a second',
  },
  TRELLIS_E_PROXY_ADMIN_UNAUTHORIZED: {
    token: 'proxy-admin-unauthorized',
    status: 401,
    message: "{path} on a proxy's admin server needs the mesh's admin credential (Authorization: Bearer)",
  },
  TRELLIS_E_CANARY_ROLLED_BACK: {
    token: 'canary-rolled-back',
    status: 409,
    message: 'canary of {service} {version} rolled back at step {step}: {reason}; weights now {weights}',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

function fill(template: string, params: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => (k in params ? String(params[k]) : `{${k}}`));
}

/** An error with a stable code from {@link ERRORS}. */
export class TrellisError extends Error {
  readonly code: ErrorCode;
  readonly params: Readonly<Record<string, unknown>>;
  constructor(code: ErrorCode, params: Record<string, unknown> = {}) {
    super(fill(ERRORS[code].message, params));
    this.name = 'TrellisError';
    this.code = code;
    this.params = params;
  }
  get status(): number {
    return ERRORS[this.code].status;
  }
  get token(): string {
    return ERRORS[this.code].token;
  }
}

/** The JSON body of an error answer: enough for a client to rebuild the same TrellisError (cli/weights-client.ts does). */
export interface ErrorBody {
  readonly code: ErrorCode;
  readonly message: string;
  readonly params: Readonly<Record<string, unknown>>;
}

/** The body every JSON error answer carries; its status is `err.status`. */
export function errorBody(err: TrellisError): ErrorBody {
  return { code: err.code, message: err.message, params: err.params };
}

/**
 * The extra response header fields of a code's answer (the table's `headers`, filled from
 * params), as `[name, value]` pairs; undefined for a code without any.
 */
export function errorHeaders(code: ErrorCode, params: Record<string, unknown> = {}): [string, string][] | undefined {
  const spec: ErrorSpec = ERRORS[code];
  if (spec.headers === undefined) return undefined;
  return Object.entries(spec.headers).map(([name, template]) => [name, fill(template, params)]);
}

/** Builds the message of a code without throwing; used on hot paths that answer directly. */
export function errorMessage(code: ErrorCode, params: Record<string, unknown> = {}): string {
  return fill(ERRORS[code].message, params);
}
