// One HTTP request and its response as it passes through a proxy's stack: the request,
// the decisions the layers made so far (each set by the one layer that makes it, and
// typed for the layers after it: stack/decisions.ts), and the progress of its answer.
// `fail()` is the one place a Trellis error becomes a response; `report()` sends an
// attempt's outcome back up through the layers the exchange passed (stack/layer.ts).
import { STATUS_CODES } from 'node:http';
import type { Endpoint } from '../../api/protocol.js';
import { ERRORS, errorHeaders, errorMessage, type ErrorCode } from '../../errors.js';
import type { RequestHead } from '../../http1/http1-parser.js';
import type { CompiledBackend, CompiledRoute, CompiledUpstream } from '../routing/router.js';
import type { HeadEdits } from '../filters/head-edits.js';
import type { HeaderModifier } from '../filters/header-modifier.js';
import { END, type Outcome } from './outcome.js';
import type { Attempts } from '../balancer/attempt.js';
import type { ActiveSpan } from '../../telemetry/tracing/span.js';
import type { WorkloadName } from '../../security/spiffe.js';
/**
 * What authorization found worth a word in the access log of an exchange it let through
 * or refused: the policy (`<namespace>/<name>`, from config) and what it did. Made once
 * per snapshot (src/proxy/authz/engine.ts), so a request allocates none.
 */
export interface AuthzNote {
  /** `<namespace>/<name>`; refused because no ALLOW policy allowed it: the service's ALLOW policies, comma-separated. */
  readonly policy: string;
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  /**
   * `denied`: refused; `dry-run-denied`: a dryRun policy would have refused it; `audited`:
   * an AUDIT policy matched; `allowed`: let in (by `policy`, or by no ALLOW policy when ''),
   * which the trace span names and the access log leaves out.
   */
  readonly result: 'denied' | 'dry-run-denied' | 'audited' | 'allowed';
}

/**
 * Where the HTTP/1.1 forwarder writes a response's bytes: the client's socket, or an
 * adapter that translates them for an HTTP/2 client (h2/to-http1.ts).
 */
export type ClientBytes = import('node:stream').Duplex & { readonly remoteAddress?: string | undefined };

/** The client side of an exchange: implemented by the HTTP/1.1 server connection (and the HTTP/2 ones). */
export interface ClientSide {
  readonly socket: ClientBytes;
  /**
   * The workload at the other end of an inbound mutual TLS connection, verified once per
   * connection (tls/mesh-tls.ts); undefined for plaintext and on outbound listeners.
   */
  readonly peer?: PeerIdentity | undefined;
  /** Called once when the response has been fully written (or the exchange failed). */
  exchangeDone(ex: Exchange, keepAlive: boolean): void;
  /** Called when the request body can flow again (the upstream drained or connected). */
  resumeBody(): void;
  pauseBody(): void;
  /** Hands the connection over to a byte tunnel (after 101): returns bytes read but not yet used. */
  detach(): Buffer | undefined;
  /** HTTP/2 only: answers a Trellis error on the stream (gRPC-shaped for a gRPC call); fail() calls it. */
  failStream?(ex: Exchange, code: ErrorCode, params: Record<string, unknown>, status?: number, grpcStatus?: number): void;
  /** HTTP/2 only: answers a body-less response the proxy makes (a redirect); `lines` end in CRLF. */
  respondStream?(ex: Exchange, status: number, lines: string): void;
  /**
   * Ends this client's connection (HTTP/1.1) or stream (HTTP/2) after an exception in
   * handling it, and reports it to the listener (counted and logged; listener-context.ts).
   */
  failed?(err: unknown): void;
}

/** A verified peer, with the mesh service it names (its key, when the name is one of the mesh's), found once per connection. */
export interface PeerIdentity {
  readonly name: WorkloadName;
  readonly spiffeId: string;
  /** The service key the name stands for (`sa`, or `sa.ns` outside default): the caller when it is a mesh service. */
  readonly serviceKey: string;
}

/**
 * An end user a RequestAuthentication verified (src/proxy/authn/): `principal` is Istio's
 * request principal, `<iss>/<sub>`, and `claims` the token's payload (AuthorizationPolicy's
 * `requestPrincipals` and `request.auth.claims[...]` read them).
 */
export interface RequestAuth {
  readonly principal: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Runs an exchange through what remains of a stack. */
export type Handler<E extends Exchange = Exchange> = (ex: E) => void;

/**
 * The way back: what a stack's layers do with an outcome, innermost first. For a
 * response head, true means deliver it (no layer took it); for a failure, false once a
 * layer took it (another attempt) or the edge answered it.
 */
export type Back = (ex: Exchange, o: Outcome) => boolean;

/**
 * Outside every layer: a response head is delivered, a failure no layer took is the
 * client's answer, an end is nothing more to do. (linkerd maps errors to responses in
 * one place at the server's edge; this is that place for attempt outcomes.)
 */
export const edge: Back = (ex, o) => {
  if (o.kind === 'head' || o.kind === 'end') return true;
  ex.fail(o.code, o.params);
  return false;
};

/**
 * The attempt in flight, as the codec sending it shows it to the layers: when the
 * request went out, and how to give it up. The HTTP/1.1 upstream connection is one;
 * an HTTP/2 stream and the HTTP/1.1 leg of an HTTP/2 exchange have their own.
 */
export interface AttemptLink {
  /** Whether request body bytes can be written now (HTTP/1.1: connected). */
  readonly ready: boolean;
  /** performance.now() when the request head went out; 0 while connecting. */
  readonly sentAt: number;
  /**
   * How long this kind of connection waits for a response head when the route sets no
   * limit; 0: none (an HTTP/2 stream: a gRPC server may rightly hold its headers).
   */
  readonly headTimeoutMs: number;
  /** Writes request body bytes; false when the upstream is backed up. */
  write(chunk: Buffer): boolean;
  /** Gives the attempt up: closes its connection or stream and reports nothing. */
  cancel(): void;
}

/** What the retry layer keeps on an exchange it may send again (retry.ts implements it). */
export interface RetryHold {
  /** An attempt (or the exchange) ended: gives back what the retry held for it (a circuit breaker's retry slot). */
  settle(): void;
  /** Whether a response with this status is one to retry. */
  retriesStatus(status: number): boolean;
  /** Takes a failed attempt (a status, or no answer) and sends the exchange again if it may be; false when not. */
  again(ex: Exchange, reason: number | 'reset' | 'timeout'): boolean;
}

/** Keeps request body bytes as they pass (the retry layer, for a replay). */
export interface BodyRecorder {
  record(chunk: Buffer): void;
}

const REASONS: Record<number, string> = {
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/**
 * Builds a complete error response; the body says what happened and what to do.
 * `status` overrides the table's (a fault abort answers the status its policy names).
 * The answer to a HEAD has the head only (RFC 9110 9.3.2): a client reads no body
 * after it, so body bytes would be taken for the next response on the connection.
 */
export function errorResponse(
  code: ErrorCode,
  params: Record<string, unknown>,
  close: boolean,
  status: number = ERRORS[code].status,
  head = false,
  extra = '',
): Buffer {
  const spec = ERRORS[code];
  const body = JSON.stringify({ code, message: errorMessage(code, params) });
  return Buffer.from(
    `HTTP/1.1 ${status} ${REASONS[status] ?? STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ntrellis-error: ${spec.token}\r\n${extra}` +
      extraLines(code, params) +
      (close ? 'connection: close\r\n' : '') +
      `\r\n${head ? '' : body}`,
    'latin1',
  );
}

/**
 * A gRPC error as a trailers-only response: HTTP 200, `content-type: application/grpc`
 * and the status in the headers, as gRPC clients expect from a proxy.
 */
export function grpcErrorResponse(code: ErrorCode, params: Record<string, unknown>, grpcStatus: number, close: boolean, extra = ''): Buffer {
  const message = encodeURIComponent(errorMessage(code, params));
  return Buffer.from(
    `HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: ${grpcStatus}\r\ngrpc-message: ${message}\r\n` +
      `trellis-error: ${ERRORS[code].token}\r\ncontent-length: 0\r\n${extra}` +
      extraLines(code, params) +
      (close ? 'connection: close\r\n' : '') +
      '\r\n',
    'latin1',
  );
}

/** The error table's extra header fields of `code` (a 401's WWW-Authenticate) as CRLF-ended lines; '' for most codes. */
function extraLines(code: ErrorCode, params: Record<string, unknown>): string {
  const headers = errorHeaders(code, params);
  if (headers === undefined) return '';
  let out = '';
  for (const [name, value] of headers) out += `${name}: ${value}\r\n`;
  return out;
}

/** A byte tunnel an exchange became after `101 Switching Protocols`, for telemetry. */
export interface Tunnel {
  /** The protocol switched to, lower case: one the destination service permits (upgrade.ts). */
  readonly protocol: string;
  /** performance.now() when the 101 arrived. */
  readonly openedAt: number;
  /** Bytes from the client to the upstream, and back, after the heads. */
  sent: number;
  received: number;
  /** Set by telemetry when it observes the exchange; the codec calls it once, when the tunnel closes. */
  onClose: ((t: Tunnel) => void) | undefined;
}

/**
 * What few exchanges need: a route's timeouts, an upgrade, a retry's recorder, route
 * filters' edits, request authentication's user, a tunnel, a body held back. Made the
 * first time one of them is set to other than its default (Exchange's accessors), so
 * an ordinary exchange carries one field for all of them: each field of an exchange is
 * 8 bytes of every request's garbage, and the exchange was the largest object a request
 * made (about 400 bytes).
 */
class Uncommon {
  requestAuth: RequestAuth | undefined = undefined;
  pinned: Endpoint | undefined = undefined;
  upgradeTo = '';
  replyHead = '';
  headEdits: HeadEdits | undefined = undefined;
  responseEdits: HeaderModifier[] | undefined = undefined;
  ruleEdits: { readonly lines: readonly string[] | undefined; readonly path: string | undefined; readonly responses: number } | undefined = undefined;
  deadline = 0;
  attemptTimeoutMs = 0;
  recorder: BodyRecorder | undefined = undefined;
  bodyQueue: Buffer[] | undefined = undefined;
  tunnel: Tunnel | undefined = undefined;
  closeAfter = false;
}

export class Exchange {
  readonly client: ClientSide;
  readonly req: RequestHead;
  /** The raw request head, as received. */
  readonly head: Buffer;
  /** The request has no body: none announced (HTTP/1.1), or its headers ended the stream (HTTP/2). */
  readonly bodyless: boolean;
  readonly startedAt = performance.now();

  // Decisions, each set by the one layer that makes it (stack/decisions.ts types them
  // for the layers after it).
  /** The destination service (the upstream layer), or this proxy's own (inbound). */
  service = '';
  /** The calling service (the identity layer). */
  source = '';
  /** The calling workload as its verified certificate names it (mTLS); undefined: not known. */
  peer: WorkloadName | undefined = undefined;
  /** Authorization's word for the access log (src/proxy/authz/layer.ts); undefined: nothing to say. */
  authz: AuthzNote | undefined;
  upstream: CompiledUpstream | undefined;
  route: CompiledRoute | undefined;
  /** Index in `route.backends` of the backend split picked. */
  backendIndex = 0;
  backend: CompiledBackend | undefined;
  endpoint: Endpoint | undefined;
  /** Header lines (each ending in CRLF) added when forwarding. */
  extraHead = '';
  /** This hop's span, when the exchange is sampled (stack/trace.ts); undefined: not sampled, no span object. */
  trace: ActiveSpan | undefined;
  /** The unsampled trace context the trace layer started for a request that brought none ('' otherwise). */
  traceHead = '';
  /** This exchange's slot among the exchanges the timeouts sweep watches; -1: not watched (timeout.ts). */
  watchSlot = -1;
  /** Attempts made (more than 1 when retried), for the access log. */
  attempts = 1;
  /** The retry layer's state for this exchange, while it may be sent again (retry.ts). */
  retry: RetryHold | undefined;
  /** The balance layer's bookkeeping of this exchange's attempts (attempt.ts). */
  tries: Attempts | undefined;

  // The attempt in flight (set by the codec).
  link: AttemptLink | undefined;
  /** The outcome handlers of the layers this exchange passed, innermost first (stack/layer.ts). */
  back: Back = edge;

  // Progress.
  status = 0;
  /** The call's grpc-status (from trailers, or a trailers-only response); '' when not gRPC. */
  grpcStatus = '';
  responseBytes = 0;
  errorToken = '';
  responseStarted = false;
  requestBodyDone = false;
  finished = false;

  #uncommon: Uncommon | undefined = undefined;

  /** The verified end user (requestauthn.ts): `iss/sub`, and the token's claims. */
  get requestAuth(): RequestAuth | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.requestAuth;
  }

  set requestAuth(v: RequestAuth | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.requestAuth = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).requestAuth = v;
  }

  /** The instance the request addressed itself (its app's or sidecar's address), when it did (the upstream layer). */
  get pinned(): Endpoint | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.pinned;
  }

  set pinned(v: Endpoint | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.pinned = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).pinned = v;
  }

  /**
   * The upgrade protocols this request may ask the upstream for, as the upgrade layer
   * (upgrade.ts) permitted them; '' forwards it as a plain request and refuses a 101.
   */
  get upgradeTo(): string {
    return this.#uncommon === undefined ? '' : this.#uncommon.upgradeTo;
  }

  set upgradeTo(v: string) {
    if (this.#uncommon !== undefined) this.#uncommon.upgradeTo = v;
    else if (v !== '') (this.#uncommon = new Uncommon()).upgradeTo = v;
  }

  /**
   * Header lines (each ending in CRLF) added to a response the proxy makes itself
   * (`fail`): a 429's Retry-After and RateLimit fields (ratelimit/layer.ts).
   */
  get replyHead(): string {
    return this.#uncommon === undefined ? '' : this.#uncommon.replyHead;
  }

  set replyHead(v: string) {
    if (this.#uncommon !== undefined) this.#uncommon.replyHead = v;
    else if (v !== '') (this.#uncommon = new Uncommon()).replyHead = v;
  }

  /** Request head edits by route filters; when set, the codec re-serializes the head. */
  get headEdits(): HeadEdits | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.headEdits;
  }

  set headEdits(v: HeadEdits | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.headEdits = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).headEdits = v;
  }

  /** Response header edits by route filters, handed to the response head on the way back. */
  get responseEdits(): HeaderModifier[] | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.responseEdits;
  }

  set responseEdits(v: HeaderModifier[] | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.responseEdits = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).responseEdits = v;
  }

  /**
   * The edits as the rule's filters left them, saved by the first backendRef filter
   * pass: a retried attempt picks its backend again, and its filters must apply to
   * these, not on top of the previous attempt's.
   */
  get ruleEdits(): { readonly lines: readonly string[] | undefined; readonly path: string | undefined; readonly responses: number } | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.ruleEdits;
  }

  set ruleEdits(v: { readonly lines: readonly string[] | undefined; readonly path: string | undefined; readonly responses: number } | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.ruleEdits = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).ruleEdits = v;
  }

  /** performance.now() after which the exchange answers 504 request-timeout; 0: none (timeout.ts). */
  get deadline(): number {
    return this.#uncommon === undefined ? 0 : this.#uncommon.deadline;
  }

  set deadline(v: number) {
    if (this.#uncommon !== undefined) this.#uncommon.deadline = v;
    else if (v !== 0) (this.#uncommon = new Uncommon()).deadline = v;
  }

  /** Time allowed for each attempt's response head, in ms; 0: the connection's default (timeout.ts). */
  get attemptTimeoutMs(): number {
    return this.#uncommon === undefined ? 0 : this.#uncommon.attemptTimeoutMs;
  }

  set attemptTimeoutMs(v: number) {
    if (this.#uncommon !== undefined) this.#uncommon.attemptTimeoutMs = v;
    else if (v !== 0) (this.#uncommon = new Uncommon()).attemptTimeoutMs = v;
  }

  /** Set by the retry layer while the request body may be needed for a replay. */
  get recorder(): BodyRecorder | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.recorder;
  }

  set recorder(v: BodyRecorder | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.recorder = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).recorder = v;
  }

  /** Request body bytes to send before any more the client sends (held until connected, or kept for a replay). */
  get bodyQueue(): Buffer[] | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.bodyQueue;
  }

  set bodyQueue(v: Buffer[] | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.bodyQueue = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).bodyQueue = v;
  }

  /** Set when the exchange became a tunnel (101). */
  get tunnel(): Tunnel | undefined {
    return this.#uncommon === undefined ? undefined : this.#uncommon.tunnel;
  }

  set tunnel(v: Tunnel | undefined) {
    if (this.#uncommon !== undefined) this.#uncommon.tunnel = v;
    else if (v !== undefined) (this.#uncommon = new Uncommon()).tunnel = v;
  }

  /** The client connection closes after this exchange (the response said `connection: close`). */
  get closeAfter(): boolean {
    return this.#uncommon === undefined ? false : this.#uncommon.closeAfter;
  }

  set closeAfter(v: boolean) {
    if (this.#uncommon !== undefined) this.#uncommon.closeAfter = v;
    else if (v !== false) (this.#uncommon = new Uncommon()).closeAfter = v;
  }

  constructor(client: ClientSide, req: RequestHead, head: Buffer, bodyless = req.contentLength <= 0 && !req.chunked) {
    this.client = client;
    this.req = req;
    this.head = head;
    this.bodyless = bodyless;
  }

  /** Sends an outcome of the attempt back up through the layers; for a head, true: deliver it. */
  report(o: Outcome): boolean {
    return this.back(this, o);
  }

  /** Forwards request body bytes, or holds them until the upstream connection is ready. */
  writeBody(chunk: Buffer): void {
    if (this.recorder !== undefined) this.recorder.record(chunk);
    const up = this.link;
    if (up?.ready) {
      if (!up.write(chunk)) this.client.pauseBody();
    } else {
      (this.bodyQueue ??= []).push(chunk);
      this.client.pauseBody();
    }
  }

  /**
   * Ends the exchange with a Trellis error: the one rescue point of the proxy. A fault
   * abort passes the status its policy names, or a gRPC status (answered trailers-only).
   */
  fail(code: ErrorCode, params: Record<string, unknown> = {}, status?: number, grpcStatus?: number): void {
    if (this.finished) return;
    const spec = ERRORS[code];
    this.errorToken = spec.token;
    this.recorder = undefined;
    if (this.client.failStream !== undefined) {
      this.client.failStream(this, code, params, status, grpcStatus);
      this.finish(false);
      return;
    }
    if (this.responseStarted) {
      // Part of a response is already out: the only honest signal left is a reset.
      this.status = this.status || spec.status;
      this.client.socket.destroy();
      this.finish(false);
      return;
    }
    this.status = grpcStatus !== undefined ? 200 : (status ?? spec.status);
    const close = !this.requestBodyDone || !this.req.keepAlive || spec.status === 400 || spec.status === 431;
    const res =
      grpcStatus !== undefined
        ? grpcErrorResponse(code, params, grpcStatus, close, this.replyHead)
        : errorResponse(code, params, close, this.status, this.req.method === 'HEAD', this.replyHead);
    this.responseBytes = res.length;
    this.client.socket.write(res);
    this.finish(!close);
  }

  /** Ends the exchange with a body-less response the proxy makes itself (a redirect); `lines` end in CRLF. */
  respond(status: number, lines: string): void {
    if (this.finished || this.responseStarted) return;
    this.status = status;
    if (this.client.respondStream !== undefined) {
      this.client.respondStream(this, status, lines);
      this.finish(false);
      return;
    }
    const close = !this.requestBodyDone || !this.req.keepAlive;
    const res = Buffer.from(
      `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\n${lines}content-length: 0\r\n${close ? 'connection: close\r\n' : ''}\r\n`,
      'latin1',
    );
    this.responseBytes = res.length;
    this.client.socket.write(res);
    this.finish(!close);
  }

  /** Marks the exchange over; `keepAlive` says whether the client connection can carry another request. */
  finish(keepAlive: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.back(this, END);
    this.client.exchangeDone(this, keepAlive);
  }

  /**
   * The client went away (or the exchange became a tunnel) before it was answered: the
   * attempt in flight is given up and the layers settle, without a word to the client.
   */
  abandon(token: string): void {
    if (this.finished) return;
    if (token !== '') this.errorToken ||= token;
    this.finished = true;
    // The layers settle first: the attempt's send time is still on its link.
    this.back(this, END);
    const link = this.link;
    this.link = undefined;
    link?.cancel();
  }
}

/**
 * Runs `fn` for `ex` from a timer or another event outside its listener's guard (a
 * retry's backoff, a fault delay, a queued request resumed): an exception ends this
 * exchange's client (reported as the listener's connection errors are), never the process.
 */
export function runGuarded(ex: Exchange, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (ex.client.failed !== undefined) ex.client.failed(err);
    else ex.client.socket.destroy();
  }
}
