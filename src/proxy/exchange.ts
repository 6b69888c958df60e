// One HTTP request and its response as it passes through a proxy. Layers fill in what
// they decide (the upstream, the route, the backend, the endpoint); the forwarder
// moves the bytes; `fail()` is the one place a Trellis error becomes a response.
import type { Endpoint } from '../control/protocol.js';
import { ERRORS, errorMessage, type ErrorCode } from '../errors.js';
import type { RequestHead } from './http1-parser.js';
import type { CompiledBackend, CompiledRoute, CompiledUpstream } from './router.js';
import type { HeadEdits } from './filters/head-edits.js';
import type { HeaderModifier } from './filters/header-modifier.js';
import type { UpstreamConnection } from './upstream-connection.js';

/** The client side of an exchange: implemented by the HTTP/1.1 server connection. */
export interface ClientSide {
  readonly socket: import('node:net').Socket;
  /** Called once when the response has been fully written (or the exchange failed). */
  exchangeDone(ex: Exchange, keepAlive: boolean): void;
  /** Called when the request body can flow again (the upstream drained or connected). */
  resumeBody(): void;
  pauseBody(): void;
  /** Hands the connection over to a byte tunnel (after 101): returns bytes read but not yet used. */
  detach(): Buffer | undefined;
  /** HTTP/2 only: answers a Trellis error on the stream (gRPC-shaped for a gRPC call); fail() calls it. */
  failStream?(ex: Exchange, code: ErrorCode, params: Record<string, unknown>): void;
  /** HTTP/2 only: answers a body-less response the proxy makes (a redirect); `lines` end in CRLF. */
  respondStream?(ex: Exchange, status: number, lines: string): void;
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
  301: 'Moved Permanently', 302: 'Found', 400: 'Bad Request', 404: 'Not Found', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** Builds a complete error response; the body says what happened and what to do. */
export function errorResponse(code: ErrorCode, params: Record<string, unknown>, close: boolean): Buffer {
  const spec = ERRORS[code];
  const body = JSON.stringify({ code, message: errorMessage(code, params) });
  return Buffer.from(
    `HTTP/1.1 ${spec.status} ${REASONS[spec.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ntrellis-error: ${spec.token}\r\n` +
      (close ? 'connection: close\r\n' : '') + `\r\n${body}`,
    'latin1',
  );
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
  /** Request head edits by route filters; when set, the forwarder re-serializes the head. */
  headEdits: HeadEdits | undefined;
  /** Response header edits by route filters, applied to the response head in order. */
  responseEdits: HeaderModifier[] | undefined;
  /** Telemetry labels. */
  source = '';
  destinationVersion = '';
  /** Called once when the exchange ends, for metrics and the access log. */
  observer: ((ex: Exchange) => void) | undefined;

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
    const up = this.upstreamConn;
    if (up !== undefined && up.ready) {
      if (!up.socket.write(chunk)) this.client.pauseBody();
    } else {
      (this.bodyQueue ??= []).push(chunk);
      this.client.pauseBody();
    }
  }

  /** Ends the exchange with a Trellis error: the one rescue point of the proxy. */
  fail(code: ErrorCode, params: Record<string, unknown> = {}): void {
    if (this.finished) return;
    const spec = ERRORS[code];
    this.errorToken = spec.token;
    if (this.client.failStream !== undefined) {
      this.client.failStream(this, code, params);
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
    this.status = spec.status;
    const close = !this.requestBodyDone || !this.req.keepAlive || spec.status === 400 || spec.status === 431;
    const res = errorResponse(code, params, close);
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
    this.observer?.(this);
    this.client.exchangeDone(this, keepAlive);
  }
}
