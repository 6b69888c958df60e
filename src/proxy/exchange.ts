// One HTTP request and its response as it passes through a proxy. Layers fill in what
// they decide (the upstream, the route, the backend, the endpoint); the forwarder
// moves the bytes; `fail()` is the one place a Trellis error becomes a response.
import { STATUS_CODES } from 'node:http';
import type { Endpoint } from '../api/protocol.js';
import { ERRORS, errorMessage, type ErrorCode } from '../errors.js';
import type { RequestHead } from './http1-parser.js';
import type { Replayer } from './retry.js';
import type { CompiledBackend, CompiledRoute, CompiledUpstream } from './router.js';
import type { HeadEdits } from './filters/head-edits.js';
import type { HeaderModifier } from './filters/header-modifier.js';
import type { UpstreamConnection } from './upstream-connection.js';
import { settleAttempts } from './attempt.js';
import type { CircuitBreaker } from './circuit-breaker.js';

/**
 * Where the HTTP/1.1 forwarder writes a response's bytes: the client's socket, or an
 * adapter that translates them for an HTTP/2 client (h2/to-http1.ts).
 */
export type ClientBytes = import('node:stream').Duplex & { readonly remoteAddress?: string | undefined };

/** The client side of an exchange: implemented by the HTTP/1.1 server connection (and the HTTP/2 ones). */
export interface ClientSide {
  readonly socket: ClientBytes;
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

export type Handler = (ex: Exchange) => void;
export type Layer = (next: Handler) => Handler;

/** Composes layers outermost first: `compose([a, b], end)` runs a, then b, then end. */
export function compose(layers: readonly Layer[], terminal: Handler): Handler {
  let h = terminal;
  for (let i = layers.length - 1; i >= 0; i--) h = layers[i]!(h);
  return h;
}

const REASONS: Record<number, string> = {
  301: 'Moved Permanently', 302: 'Found', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/**
 * Builds a complete error response; the body says what happened and what to do.
 * `status` overrides the table's (a fault abort answers the status its policy names).
 * The answer to a HEAD has the head only (RFC 9110 9.3.2): a client reads no body
 * after it, so body bytes would be taken for the next response on the connection.
 */
export function errorResponse(code: ErrorCode, params: Record<string, unknown>, close: boolean, status: number = ERRORS[code].status, head = false): Buffer {
  const spec = ERRORS[code];
  const body = JSON.stringify({ code, message: errorMessage(code, params) });
  return Buffer.from(
    `HTTP/1.1 ${status} ${REASONS[status] ?? STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ntrellis-error: ${spec.token}\r\n` +
      (close ? 'connection: close\r\n' : '') + `\r\n${head ? '' : body}`,
    'latin1',
  );
}

/**
 * A gRPC error as a trailers-only response: HTTP 200, `content-type: application/grpc`
 * and the status in the headers, as gRPC clients expect from a proxy.
 */
export function grpcErrorResponse(code: ErrorCode, params: Record<string, unknown>, grpcStatus: number, close: boolean): Buffer {
  const message = encodeURIComponent(errorMessage(code, params));
  return Buffer.from(
    `HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: ${grpcStatus}\r\ngrpc-message: ${message}\r\n` +
      `trellis-error: ${ERRORS[code].token}\r\ncontent-length: 0\r\n` + (close ? 'connection: close\r\n' : '') + '\r\n',
    'latin1',
  );
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

export class Exchange {
  readonly client: ClientSide;
  readonly req: RequestHead;
  /** The raw request head, as received. */
  readonly head: Buffer;
  readonly startedAt = performance.now();

  // Decided by layers.
  service = '';
  upstream: CompiledUpstream | undefined;
  route: CompiledRoute | undefined;
  backend: CompiledBackend | undefined;
  endpoint: Endpoint | undefined;
  /** The backend whose balancer has this exchange's current attempt open (attempt.ts). */
  attemptBackend: CompiledBackend | undefined;
  /** The circuit breaker counting the open attempt, and the one holding a scheduled retry. */
  attemptBreaker: CircuitBreaker | undefined;
  heldRetry: CircuitBreaker | undefined;
  /** Endpoints this request already failed to connect to. */
  tried: Set<string> | undefined;
  /** Why the last connect attempt failed, when one did. */
  connectError = '';
  /** Set by the balance layer: picks another endpoint and forwards again. */
  retryConnect: Handler | undefined;
  /** Header lines (each ending in CRLF) added when forwarding. */
  extraHead = '';
  /** Index in `route.backends` of the backend split picked. */
  backendIndex = 0;
  /**
   * The upgrade protocols this request may ask the upstream for, as the upgrade layer
   * (upgrade.ts) permitted them; '' forwards it as a plain request and refuses a 101.
   */
  upgradeTo = '';
  /** Set when the exchange became a tunnel (101). */
  tunnel: Tunnel | undefined;
  /** Request head edits by route filters; when set, the forwarder re-serializes the head. */
  headEdits: HeadEdits | undefined;
  /** Response header edits by route filters, applied to the response head in order. */
  responseEdits: HeaderModifier[] | undefined;
  /**
   * The edits as the rule's filters left them, saved by the first backendRef filter
   * pass: a retried attempt picks its backend again, and its filters must apply to
   * these, not on top of the previous attempt's.
   */
  ruleEdits: { readonly lines: readonly string[] | undefined; readonly path: string | undefined; readonly responses: number } | undefined;
  /** Telemetry labels. */
  source = '';
  destinationVersion = '';
  /** Called once when the exchange ends, for metrics and the access log. */
  observer: ((ex: Exchange) => void) | undefined;

  // Resilience (timeout.ts, retry.ts): zero or undefined on routes without it, so the
  // pool's sweep and the upstream connection pay one comparison for them.
  /** performance.now() after which the exchange answers 504 request-timeout; 0: none. */
  deadline = 0;
  /** Time allowed for each attempt's response head, in ms; 0: the pool's default. */
  attemptTimeoutMs = 0;
  /** Set by the retry layer while this request may be sent again. */
  retry: Replayer | undefined;
  /** Attempts made (more than 1 when retried), for the access log. */
  attempts = 1;

  // Progress.
  status = 0;
  /** The call's grpc-status (from trailers, or a trailers-only response); '' when not gRPC. */
  grpcStatus = '';
  responseBytes = 0;
  errorToken = '';
  responseStarted = false;
  requestBodyDone = false;
  /** The client connection closes after this exchange (the response said `connection: close`). */
  closeAfter = false;
  finished = false;
  upstreamConn: UpstreamConnection | undefined;
  /** Request body bytes received before an upstream connection was ready. */
  bodyQueue: Buffer[] | undefined;

  constructor(client: ClientSide, req: RequestHead, head: Buffer) {
    this.client = client;
    this.req = req;
    this.head = head;
  }

  /** Forwards request body bytes, or holds them until the upstream connection is ready. */
  writeBody(chunk: Buffer): void {
    if (this.retry !== undefined) this.retry.record(chunk);
    const up = this.upstreamConn;
    if (up !== undefined && up.ready) {
      if (!up.socket.write(chunk)) this.client.pauseBody();
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
    this.retry = undefined;
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
    this.status = grpcStatus !== undefined ? 200 : status ?? spec.status;
    const close = !this.requestBodyDone || !this.req.keepAlive || spec.status === 400 || spec.status === 431;
    const res = grpcStatus !== undefined ? grpcErrorResponse(code, params, grpcStatus, close) : errorResponse(code, params, close, this.status, this.req.method === 'HEAD');
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
    if (this.attemptBackend !== undefined || this.heldRetry !== undefined) settleAttempts(this);
    this.observer?.(this);
    this.client.exchangeDone(this, keepAlive);
  }
}
