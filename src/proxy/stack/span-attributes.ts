// The attributes of a hop's span (OpenTelemetry's HTTP semantic conventions, and
// trellis.* for what they have no name for), in two forms that must agree attribute for
// attribute and in order: a record (`spanAttributes`, for the spans made rarely: a failed
// request exported unsampled) and their OTLP JSON (`HopSpanJson`, for the span of every
// sampled request, at 100% sampling one per request per proxy).
//
// The JSON form keeps each attribute's JSON from the last request and reuses it while the
// value is the same, which at a proxy it nearly always is (its service and version, the
// route, the endpoint, the caller, the status): a span costs a few comparisons and one
// string of a few flat pieces. Building the record, walking it and escaping each value
// per request, then flattening a string of a hundred pieces into the export buffer, was
// most of what a sampled span cost a proxy (bench --only tracing, profiled).
import { attributeJson, flat, jsonStringOf, spanJsonOf } from '../../telemetry/tracing/otlp-json.js';
import type { AttributeValue } from '../../telemetry/tracing/span.js';
import { grpcStatusLabel, type Direction } from '../../telemetry/metrics.js';
import type { Endpoint } from '../../api/protocol.js';
import type { AuthzNote, Exchange } from './exchange.js';

/** A `url.path` attribute holds at most this many characters (a path is the client's to make long). */
const MAX_PATH = 256;
/** HTTP methods semantic conventions name; any other is `_OTHER` (their rule, and a bound). */
const KNOWN_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

/** `trellis.authz.decision` of each authorization note (allow and deny as the policies' actions say them). */
const AUTHZ_DECISION: Readonly<Record<AuthzNote['result'], string>> = {
  allowed: 'allow',
  denied: 'deny',
  'dry-run-denied': 'dry-run-denied',
  audited: 'audited',
};

/** The method as a span names it: one of the known methods or `_OTHER`. */
export function spanMethod(m: string): string {
  return KNOWN_METHODS.has(m) ? m : '_OTHER';
}

function boundedPath(p: string): string {
  return p.length <= MAX_PATH ? p : `${p.slice(0, MAX_PATH)}…`;
}

/** What a hop's span says of the proxy itself. */
export interface HopSpanOptions {
  readonly direction: Direction;
  /** This proxy's service (the source outbound, the destination inbound) and version. */
  readonly service: string;
  readonly version: string;
}

/** The error.type of a failed exchange. */
function errorType(ex: Exchange): string {
  return ex.errorToken || (ex.status > 0 ? String(ex.status) : 'no-response');
}

/** The span's attributes as a record. */
export function spanAttributes(o: HopSpanOptions, ex: Exchange, failed: boolean): Record<string, AttributeValue> {
  const outbound = o.direction === 'outbound';
  const a: Record<string, AttributeValue> = {
    'http.request.method': spanMethod(ex.req.method),
    'url.path': boundedPath(ex.req.path),
    'trellis.direction': o.direction,
    'trellis.source': ex.source || 'unknown',
    'trellis.destination.service': outbound ? ex.service || 'unknown' : o.service,
    'trellis.destination.version': outbound ? ex.endpoint?.version || 'unknown' : o.version,
  };
  if (ex.status > 0) a['http.response.status_code'] = ex.status;
  if (outbound && ex.route !== undefined) a['http.route'] = ex.route.name;
  const e = ex.endpoint;
  if (e !== undefined) {
    a['server.address'] = e.host;
    a['server.port'] = e.port;
    a['trellis.endpoint'] = e.id;
  }
  if (ex.attempts > 1) a['http.request.resend_count'] = ex.attempts - 1;
  if (ex.grpcStatus !== '') a['rpc.grpc.status_code'] = grpcStatusLabel(ex.grpcStatus);
  if (failed) a['error.type'] = errorType(ex);
  if (!outbound) {
    // Who called, as its certificate says (no OpenTelemetry attribute names a SPIFFE ID:
    // tls.client.subject is a subject DN, which mesh certificates leave empty), and what
    // authorization made of it. Both from the connection and the snapshot, never from a header.
    const peer = ex.client.peer;
    if (peer !== undefined) a['trellis.peer'] = peer.spiffeId;
    const z = ex.authz;
    if (z !== undefined) {
      a['trellis.authz.decision'] = AUTHZ_DECISION[z.result];
      if (z.policy !== '') a['trellis.authz.policy'] = z.policy;
    }
  }
  return a;
}

/** One attribute's JSON, kept while its value stays the same. */
class Memo {
  readonly #key: string;
  #value: AttributeValue | undefined;
  #json = '';

  constructor(key: string) {
    this.#key = key;
  }

  json(v: AttributeValue): string {
    if (v !== this.#value) {
      this.#json = attributeJson(this.#key, v);
      this.#value = v;
    }
    return this.#json;
  }
}

/**
 * The OTLP JSON of a hop's span, as `spanJson` writes the span with {@link spanAttributes}'
 * record, byte for byte (test: span-attributes), from fragments kept per proxy stack.
 */
export class HopSpanJson {
  readonly #o: HopSpanOptions;
  readonly #outbound: boolean;
  readonly #kind: number;
  readonly #method = new Memo('http.request.method');
  readonly #path = new Memo('url.path');
  readonly #direction: string;
  readonly #source = new Memo('trellis.source');
  readonly #service = new Memo('trellis.destination.service');
  readonly #version = new Memo('trellis.destination.version');
  readonly #status = new Memo('http.response.status_code');
  readonly #route = new Memo('http.route');
  readonly #peer = new Memo('trellis.peer');
  readonly #decision = new Memo('trellis.authz.decision');
  readonly #policy = new Memo('trellis.authz.policy');
  /** The endpoint's three attributes, for the endpoint (and its values) they were made of. */
  #endpoint: Endpoint | undefined;
  #endpointHost = '';
  #endpointPort = 0;
  #endpointId = '';
  #endpointJson = '';
  /** The span's name `METHOD service` as JSON, for the method and service it was made of. */
  #nameMethod = '';
  #nameService = '';
  #nameJson = '';

  constructor(o: HopSpanOptions, kind: number) {
    this.#o = o;
    this.#outbound = o.direction === 'outbound';
    this.#kind = kind;
    this.#direction = attributeJson('trellis.direction', o.direction);
  }

  /** The span of `ex`, ended now. */
  json(ex: Exchange, traceId: string, spanId: string, parentSpanId: string, traceState: string, startMs: number, endMs: number, failed: boolean): string {
    const outbound = this.#outbound;
    const method = spanMethod(ex.req.method);
    const service = outbound ? ex.service || 'unknown' : this.#o.service;
    if (method !== this.#nameMethod || service !== this.#nameService) {
      this.#nameJson = flat(jsonStringOf(`${method} ${service}`));
      this.#nameMethod = method;
      this.#nameService = service;
    }
    let a =
      `[${this.#method.json(method)},${this.#path.json(boundedPath(ex.req.path))},${this.#direction},` +
      `${this.#source.json(ex.source || 'unknown')},${this.#service.json(service)},` +
      this.#version.json(outbound ? ex.endpoint?.version || 'unknown' : this.#o.version);
    if (ex.status > 0) a += `,${this.#status.json(ex.status)}`;
    if (outbound && ex.route !== undefined) a += `,${this.#route.json(ex.route.name)}`;
    const e = ex.endpoint;
    if (e !== undefined) a += `,${this.#endpointOf(e)}`;
    if (ex.attempts > 1) a += `,${attributeJson('http.request.resend_count', ex.attempts - 1)}`;
    if (ex.grpcStatus !== '') a += `,${attributeJson('rpc.grpc.status_code', grpcStatusLabel(ex.grpcStatus))}`;
    if (failed) a += `,${attributeJson('error.type', errorType(ex))}`;
    if (!outbound) {
      const peer = ex.client.peer;
      if (peer !== undefined) a += `,${this.#peer.json(peer.spiffeId)}`;
      const z = ex.authz;
      if (z !== undefined) {
        a += `,${this.#decision.json(AUTHZ_DECISION[z.result])}`;
        if (z.policy !== '') a += `,${this.#policy.json(z.policy)}`;
      }
    }
    return spanJsonOf(traceId, spanId, parentSpanId, traceState, this.#nameJson, this.#kind, startMs, endMs, `${a}]`, failed);
  }

  #endpointOf(e: Endpoint): string {
    if (e !== this.#endpoint || e.host !== this.#endpointHost || e.port !== this.#endpointPort || e.id !== this.#endpointId) {
      this.#endpointJson = flat(
        `${attributeJson('server.address', e.host)},${attributeJson('server.port', e.port)},${attributeJson('trellis.endpoint', e.id)}`,
      );
      this.#endpoint = e;
      this.#endpointHost = e.host;
      this.#endpointPort = e.port;
      this.#endpointId = e.id;
    }
    return this.#endpointJson;
  }
}
