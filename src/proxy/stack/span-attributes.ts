// The attributes of a hop's span (OpenTelemetry's HTTP semantic conventions, and
// trellis.* for what they have no name for), in two forms that must agree attribute for
// attribute and in order: a record (`spanAttributes`, for the spans made rarely: a failed
// request exported unsampled) and the whole span written as OTLP JSON straight into the
// exporter's queue (`HopSpanWriter`, for the span of every sampled request, at 100%
// sampling one per request per proxy).
//
// The writer keeps each attribute's JSON bytes from the last request and reuses them
// while the value is the same, which at a proxy it nearly always is (its service and
// version, the route, the endpoint, the caller, the status), and writes the span's
// pieces into the queue's buffer one after another (span-queue.ts SpanBytes): a span
// costs a few comparisons and copies, and makes no string. Building the record, walking
// it and escaping each value per request, then a string of some twenty pieces flattened
// into the export buffer, was most of what a sampled span cost a proxy (bench --only
// tracing, profiled; then 2.2 KB of garbage a span, allocation sampling).
import { attributeJson } from '../../telemetry/tracing/otlp-json.js';
import type { SpanBytes } from '../../telemetry/tracing/span-queue.js';
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

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const TRACE_ID = ascii('{"traceId":');
const SPAN_ID = ascii(',"spanId":');
const PARENT_SPAN_ID = ascii(',"parentSpanId":');
const TRACE_STATE = ascii(',"traceState":');
const NAME = ascii(',"name":');
const END_TIME = ascii(',"endTimeUnixNano":');
const ATTRIBUTES = ascii(',"attributes":[');
const COMMA = ascii(',');
const END_OK = ascii('],"status":{}}');
const END_ERROR = ascii('],"status":{"code":2}}');

/**
 * One attribute's JSON (after a comma, but for the first attribute), kept while its
 * value stays the same: as a string the first time a value is written, as bytes from
 * the second (so a value that changes every request, a path, costs no Buffer).
 */
class Memo {
  readonly #key: string;
  readonly #comma: boolean;
  #value: AttributeValue | undefined;
  #json = '';
  #bytes: Buffer | undefined;

  constructor(key: string, comma = true) {
    this.#key = key;
    this.#comma = comma;
  }

  write(w: SpanBytes, v: AttributeValue): void {
    if (v !== this.#value) {
      this.#value = v;
      this.#json = `${this.#comma ? ',' : ''}${attributeJson(this.#key, v)}`;
      this.#bytes = undefined;
      w.json(this.#json);
      return;
    }
    w.raw((this.#bytes ??= Buffer.from(this.#json, 'utf8')));
  }
}

/**
 * Writes a hop's span as `spanJson` writes the span with {@link spanAttributes}' record,
 * byte for byte (test: span-attributes), from fragments kept per proxy stack.
 */
export class HopSpanWriter {
  readonly #o: HopSpanOptions;
  readonly #outbound: boolean;
  /** `,"kind":K,"startTimeUnixNano":`: the kind is the stack's. */
  readonly #kindStart: Buffer;
  readonly #method = new Memo('http.request.method', false);
  readonly #path = new Memo('url.path');
  readonly #direction: Buffer;
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
  #endpointBytes: Buffer = Buffer.alloc(0);
  /** The span's name `METHOD service` as JSON bytes, for the method and service it was made of. */
  #nameMethod = '';
  #nameService = '';
  #nameBytes: Buffer = Buffer.alloc(0);

  constructor(o: HopSpanOptions, kind: number) {
    this.#o = o;
    this.#outbound = o.direction === 'outbound';
    this.#kindStart = ascii(`,"kind":${JSON.stringify(kind)},"startTimeUnixNano":`);
    this.#direction = Buffer.from(`,${attributeJson('trellis.direction', o.direction)}`, 'utf8');
  }

  /** Writes the span of `ex`, ended now, into `w`. Ids are the caller's own (made by ids.ts, or checked by trace-context.ts), still escaped. */
  write(
    w: SpanBytes,
    ex: Exchange,
    traceId: string,
    spanId: string,
    parentSpanId: string,
    traceState: string,
    startMs: number,
    endMs: number,
    failed: boolean,
  ): void {
    const outbound = this.#outbound;
    const method = spanMethod(ex.req.method);
    const service = outbound ? ex.service || 'unknown' : this.#o.service;
    if (method !== this.#nameMethod || service !== this.#nameService) {
      this.#nameBytes = Buffer.from(JSON.stringify(`${method} ${service}`), 'utf8');
      this.#nameMethod = method;
      this.#nameService = service;
    }
    w.raw(TRACE_ID);
    w.string(traceId);
    w.raw(SPAN_ID);
    w.string(spanId);
    if (parentSpanId !== '') {
      w.raw(PARENT_SPAN_ID);
      w.string(parentSpanId);
    }
    if (traceState !== '') {
      w.raw(TRACE_STATE);
      w.string(traceState);
    }
    w.raw(NAME);
    w.raw(this.#nameBytes);
    w.raw(this.#kindStart);
    w.nanos(startMs);
    w.raw(END_TIME);
    w.nanos(endMs);
    w.raw(ATTRIBUTES);
    this.#method.write(w, method);
    this.#path.write(w, boundedPath(ex.req.path));
    w.raw(this.#direction);
    this.#source.write(w, ex.source || 'unknown');
    this.#service.write(w, service);
    this.#version.write(w, outbound ? ex.endpoint?.version || 'unknown' : this.#o.version);
    if (ex.status > 0) this.#status.write(w, ex.status);
    if (outbound && ex.route !== undefined) this.#route.write(w, ex.route.name);
    const e = ex.endpoint;
    if (e !== undefined) w.raw(this.#endpointOf(e));
    if (ex.attempts > 1) {
      w.raw(COMMA);
      w.json(attributeJson('http.request.resend_count', ex.attempts - 1));
    }
    if (ex.grpcStatus !== '') {
      w.raw(COMMA);
      w.json(attributeJson('rpc.grpc.status_code', grpcStatusLabel(ex.grpcStatus)));
    }
    if (failed) {
      w.raw(COMMA);
      w.json(attributeJson('error.type', errorType(ex)));
    }
    if (!outbound) {
      const peer = ex.client.peer;
      if (peer !== undefined) this.#peer.write(w, peer.spiffeId);
      const z = ex.authz;
      if (z !== undefined) {
        this.#decision.write(w, AUTHZ_DECISION[z.result]);
        if (z.policy !== '') this.#policy.write(w, z.policy);
      }
    }
    w.raw(failed ? END_ERROR : END_OK);
  }

  #endpointOf(e: Endpoint): Buffer {
    if (e !== this.#endpoint || e.host !== this.#endpointHost || e.port !== this.#endpointPort || e.id !== this.#endpointId) {
      this.#endpointBytes = Buffer.from(
        `,${attributeJson('server.address', e.host)},${attributeJson('server.port', e.port)},${attributeJson('trellis.endpoint', e.id)}`,
        'utf8',
      );
      this.#endpoint = e;
      this.#endpointHost = e.host;
      this.#endpointPort = e.port;
      this.#endpointId = e.id;
    }
    return this.#endpointBytes;
  }
}
