// The server side of HTTP/2 in a proxy listener: each stream of a session becomes an
// Exchange that runs through the same pipeline layers as HTTP/1.1 (a RequestHead
// built from the h2 headers, so routes, GRPCRoute and header filters match as for
// HTTP/1.1), and the client side of that exchange answers on the stream: errors the
// proxy makes are sent as HTTP/2 responses, gRPC-shaped for gRPC calls.
import http2 from 'node:http2';
import type net from 'node:net';
import { ERRORS, errorMessage, type ErrorCode } from '../../errors.js';
import { Exchange, type ClientSide, type Handler, type PeerIdentity } from '../stack/exchange.js';
import { connectionPeer } from '../tls/connection-peer.js';
import { sameAuthority, type RequestHead } from '../../http1/http1-parser.js';
import type { ProxyLimits } from '../listeners/limits.js';
import type { ListenerContext } from '../listeners/listener-context.js';
import { GRPC_STATUS, grpcErrorHeaders, grpcStatusOf, isGrpcContentType, withErrorHeaders } from './grpc.js';
import { SessionIdle } from './session-idle.js';

const END_STREAM = http2.constants.NGHTTP2_FLAG_END_STREAM;
const EMPTY = Buffer.alloc(0);
const ignore = (): void => {};

/** The client side of an exchange that came in as one stream of the proxy's HTTP/2 server. */
export class H2ServerStream implements ClientSide {
  readonly stream: http2.ServerHttp2Stream;
  readonly socket: net.Socket;
  /** The request ended with its headers (no body). */
  readonly bodyless: boolean;
  readonly grpc: boolean;
  /**
   * The request's trailers, once they came. Recorded from the start: they may arrive
   * (with the whole body, held by flow control) before the forwarder has a stream to send them on.
   */
  trailers: http2.IncomingHttpHeaders | undefined;
  /** The request body was piped to an attempt: another attempt sends the copy the retry layer kept. */
  piped = false;
  /** Set by the forwarder once a stream to the next hop is open: an error answered here cancels it. */
  cancelUpstream: (() => void) | undefined;
  /** Reports an exception in handling this stream (the listener counts and logs it); set by the server. */
  onFailure: (err: unknown) => void = ignore;

  /** `socket`: the session's (a stream's own `session` is gone once the session is destroyed). */
  /** The verified workload of an inbound mutual TLS session; undefined for plaintext. */
  readonly peer: PeerIdentity | undefined;
  constructor(stream: http2.ServerHttp2Stream, socket: net.Socket, bodyless: boolean, grpc: boolean, peer?: PeerIdentity) {
    this.peer = peer;
    this.stream = stream;
    this.socket = socket;
    this.bodyless = bodyless;
    this.grpc = grpc;
  }

  /** Resets this stream after an exception in handling it, and reports it. */
  failed(err: unknown): void {
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    this.onFailure(err);
  }

  // Flow control is HTTP/2's own: the forwarder pipes the stream, so these have nothing to do.
  exchangeDone(): void {}
  resumeBody(): void {}
  pauseBody(): void {}
  detach(): Buffer | undefined {
    return undefined;
  }

  /** `status` / `grpcStatus` override the code's own (a fault abort names them). */
  failStream(ex: Exchange, code: ErrorCode, params: Record<string, unknown>, status?: number, grpcStatus?: number): void {
    this.cancelUpstream?.();
    const s = this.stream;
    if (ex.responseStarted || s.headersSent) {
      // Part of the response is out: the honest signal left is a reset.
      ex.status ||= ERRORS[code].status;
      if (!s.destroyed) s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (s.destroyed) return;
    if (this.grpc || grpcStatus !== undefined) {
      // gRPC clients read errors from grpc-status, and expect HTTP 200 (a trailers-only response).
      ex.status = 200;
      ex.grpcStatus = String(grpcStatus ?? grpcStatusOf(code));
      s.respond(withReplyHead(grpcErrorHeaders(code, params, grpcStatus), ex.replyHead), { endStream: true });
      return;
    }
    ex.status = status ?? ERRORS[code].status;
    const body = JSON.stringify({ code, message: errorMessage(code, params) });
    ex.responseBytes = Buffer.byteLength(body);
    s.respond(
      withReplyHead(
        withErrorHeaders(
          { ':status': ex.status, 'content-type': 'application/json', 'content-length': ex.responseBytes, 'trellis-error': ERRORS[code].token },
          code,
          params,
        ),
        ex.replyHead,
      ),
    );
    // The answer to a HEAD has no content (RFC 9110 9.3.2; a DATA frame after it is a stream error, RFC 9113 8.1.1).
    if (ex.req.method === 'HEAD') {
      ex.responseBytes = 0;
      s.end();
    } else {
      s.end(body);
    }
  }

  respondStream(_ex: Exchange, status: number, lines: string): void {
    const s = this.stream;
    if (s.destroyed || s.headersSent) return;
    const headers: http2.OutgoingHttpHeaders = { ':status': status };
    for (const line of lines.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    s.respond(headers, { endStream: true });
  }
}

/** `headers` with the exchange's reply header lines (`Name: value\r\n`, names lower case) added. */
function withReplyHead<H extends http2.OutgoingHttpHeaders>(headers: H, lines: string): H {
  if (lines === '') return headers;
  for (const line of lines.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) (headers as http2.OutgoingHttpHeaders)[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * A RequestHead for an HTTP/2 request: what route matching and the filters read, and
 * what the next hop is sent. Its lines come from `raw`, the fields as received (node's
 * `headers` object merges a repeated field into one), so each field goes on as itself,
 * in order; only cookies are joined into one line with `; `, as RFC 9113 §8.2.3 asks of
 * cookie fields that leave HTTP/2 (the lines may become an HTTP/1.1 request). Without
 * `raw`, the lines come from the object.
 */
export function requestHeadOf(headers: http2.IncomingHttpHeaders, raw?: readonly string[]): RequestHead {
  const lines: string[] = [];
  if (raw !== undefined) {
    let cookie = false;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 58 /* : */) continue;
      if (name === 'cookie') {
        if (!cookie && headers.cookie !== undefined) lines.push(`cookie: ${headers.cookie}`);
        cookie = true;
        continue;
      }
      lines.push(`${name}: ${raw[i + 1]}`);
    }
  } else {
    for (const name in headers) {
      if (name.charCodeAt(0) === 58 /* : */) continue;
      const v = headers[name];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) lines.push(`${name}: ${x}`);
      else lines.push(`${name}: ${v}`);
    }
  }
  const host = (headers[':authority'] as string | undefined) ?? headers.host ?? '';
  // As a Host line too, for what re-serializes the request as HTTP/1.1 (a RequestMirror copy).
  if (headers.host === undefined && host !== '') lines.push(`host: ${host}`);
  const target = (headers[':path'] as string | undefined) ?? '/';
  const q = target.indexOf('?');
  const cl = headers['content-length'];
  return {
    method: (headers[':method'] as string | undefined) ?? 'GET',
    target,
    path: q === -1 ? target : target.slice(0, q),
    minor: 1,
    host,
    contentLength: cl === undefined ? -1 : Number(cl),
    chunked: false,
    keepAlive: true,
    upgrade: false,
    rewrite: false,
    lines,
    headBytes: 0,
  };
}

/** The settings a server advertises for `l` (see {@link createH2Server}). */
function settingsFor(l: ProxyLimits): http2.Settings {
  return {
    // Larger windows than the 64 KiB default, so one stream's throughput is not bound
    // by round trips on a fast local hop.
    initialWindowSize: 1024 * 1024,
    // Envoy's guidance for edge proxies: 100 streams per connection. nghttp2 enforces
    // it: a stream over it is refused (REFUSED_STREAM) before the client has
    // acknowledged these settings, and a client that exceeds it after is a protocol
    // error (GOAWAY). Every client we know of waits for a free stream instead.
    maxConcurrentStreams: l.h2MaxConcurrentStreams,
    // A list over h2MaxHeaderListBytes is answered 431 here, as HTTP/1.1's over-size
    // head is. node resets (ENHANCE_YOUR_CALM) a list over what is advertised before
    // the stream reaches us: twice the limit, so a list over it still gets its 431 and
    // one stream's headers are bounded in memory all the same.
    maxHeaderListSize: Math.min(2 * l.h2MaxHeaderListBytes, 0xffffffff),
  };
}

/** A header list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2): name + value + 32 per field. */
export function headerListSize(headers: http2.IncomingHttpHeaders, raw?: readonly string[]): number {
  let n = 0;
  if (raw !== undefined) {
    for (let i = 0; i + 1 < raw.length; i += 2) n += raw[i]!.length + Buffer.byteLength(raw[i + 1]!, 'latin1') + 32;
    return n;
  }
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) n += name.length + Buffer.byteLength(x, 'latin1') + 32;
    else n += name.length + Buffer.byteLength(String(v), 'latin1') + 32;
  }
  return n;
}

/**
 * An HTTP/2 server that is never listened on: a listener hands it the connections
 * that start with the HTTP/2 preface (`emit('connection', socket)`), and each stream
 * runs through `handler`. Everything a client sends is handled inside a guard: an
 * exception while setting up a session ends that session, one while handling a stream
 * resets that stream, each reported to `ctx` (counted and logged); neither reaches the
 * process. The limits are read from `ctx.limits` as each connection arrives.
 */
export function createH2Server(handler: Handler, ctx: ListenerContext): http2.Http2Server {
  let applied = ctx.limits.current;
  const server = http2.createServer({ settings: settingsFor(applied) });
  // Before node makes the session: new limits apply from the next connection on.
  server.prependListener('connection', () => {
    const l = ctx.limits.current;
    if (l === applied) return;
    applied = l;
    server.updateSettings(settingsFor(l));
  });
  server.on('session', (session) => {
    try {
      serveSession(session, handler, ctx);
    } catch (err) {
      session.destroy();
      ctx.failed('h2-session', err);
    }
  });
  return server;
}

function serveSession(session: http2.ServerHttp2Session, handler: Handler, ctx: ListenerContext): void {
  const socket = session.socket as net.Socket;
  // Once per session: the verified workload of a mutual TLS connection (undefined for plaintext).
  const peer = connectionPeer(socket);
  const limits = ctx.limits.current;
  session.on('error', (err: Error) => {
    // A reset or a write to a closed socket is a client gone, not an error; node's
    // ERR_HTTP2_* codes are HTTP/2 broken (by the client) or a GOAWAY with an error.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_HTTP2_')) ctx.failed('h2-protocol', err);
    session.destroy();
  });
  // A session window as large as the stream windows, so streams don't starve each other.
  session.once('localSettings', () => {
    if (!session.destroyed) session.setLocalWindowSize(8 * 1024 * 1024);
  });
  const idle = new SessionIdle(session, limits.idleTimeoutMs);
  /**
   * The highest stream id that reached us. Client streams are numbered 1, 3, 5…, so a
   * gap before the next one is streams refused before they reached us (node tells
   * nothing of those): counted then.
   */
  let lastId = -1;
  // `raw`: the fields as received, name and value in turn (node passes it; its types leave it out).
  session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw?: readonly string[]) => {
    const id = stream.id ?? lastId;
    const gap = (id - lastId) / 2 - 1;
    if (id > lastId) lastId = id;
    if (gap >= 1) ctx.refused('h2-streams', gap);
    // First: a stream destroyed with its session emits its error next, and an 'error'
    // with no listener ends the process. The client sees the reset; nothing to do here.
    stream.on('error', ignore);
    // The session may be gone by the time its first stream's event runs: a HEADERS
    // frame and a GOAWAY (or any connection error) in one packet. Nothing to answer.
    if (stream.destroyed || session.destroyed) return;
    try {
      idle.streamOpened(stream);
      serveStream(stream, headers, raw, flags, socket, peer, handler, ctx, limits);
    } catch (err) {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      ctx.failed('h2-stream', err);
    }
  });
}

function serveStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  raw: readonly string[] | undefined,
  flags: number,
  socket: net.Socket,
  peer: PeerIdentity | undefined,
  handler: Handler,
  ctx: ListenerContext,
  limits: ProxyLimits,
): void {
  if (headerListSize(headers, raw) > limits.h2MaxHeaderListBytes) {
    // As HTTP/1.1 answers an over-size head (431, then close): the stream, not the session.
    ctx.refused('h2-header-list');
    const body = JSON.stringify({
      code: 'TRELLIS_E_HEAD_TOO_LARGE',
      message: errorMessage('TRELLIS_E_HEAD_TOO_LARGE', { limit: limits.h2MaxHeaderListBytes }),
    });
    stream.respond({
      ':status': 431,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'trellis-error': ERRORS.TRELLIS_E_HEAD_TOO_LARGE.token,
    });
    stream.end(body);
    // A request body still coming is not read: the stream is reset once the answer is out.
    if ((flags & END_STREAM) === 0)
      stream.once('finish', () => {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    return;
  }
  const grpc = isGrpcContentType(headers['content-type']);
  const client = new H2ServerStream(stream, socket, (flags & END_STREAM) !== 0, grpc, peer);
  client.onFailure = (err) => ctx.failed('h2-stream', err);
  stream.once('trailers', (t: http2.IncomingHttpHeaders) => {
    client.trailers = t;
  });
  const ex = new Exchange(client, requestHeadOf(headers, raw), EMPTY, client.bodyless);
  // A body still to come keeps a RequestMirror from copying the request (as for HTTP/1.1).
  ex.requestBodyDone = client.bodyless;
  stream.once('close', () => {
    if (ex.finished) return;
    try {
      closed();
    } catch (err) {
      ctx.failed('h2-stream', err);
    }
  });
  const closed = (): void => {
    const reset = stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR;
    // A reset before the response ended: the client cancelled (a gRPC deadline or cancel).
    if (reset) ex.errorToken ||= 'client-closed';
    // A gRPC call that ended without a grpc-status did not succeed, whatever its HTTP status:
    // CANCELLED when reset (as the client sees it), else UNKNOWN.
    if (grpc && ex.grpcStatus === '' && ex.status !== 0) ex.grpcStatus = String(reset ? GRPC_STATUS.CANCELLED : GRPC_STATUS.UNKNOWN);
    ex.finish(false);
  };
  const refused = refusal(headers);
  if (refused !== undefined) return ex.fail('TRELLIS_E_BAD_REQUEST', { reason: refused });
  handler(ex);
}

/**
 * Why an HTTP/2 request is refused before it is routed, or undefined. CONNECT (RFC 9113
 * §8.5; extended CONNECT is refused by Node itself, which does not enable it): a tunnel
 * to any address is not a mesh's to open. A host header naming another authority than
 * :authority (RFC 9113 §8.3.1): routing reads one, and the next hop would get the other.
 */
function refusal(headers: http2.IncomingHttpHeaders): string | undefined {
  if (headers[':method'] === 'CONNECT') return 'CONNECT is not supported';
  const authority = headers[':authority'];
  const host = headers.host;
  if (authority !== undefined && host !== undefined && !sameAuthority(host, authority, headers[':scheme'] === 'https' ? ':443' : ':80')) {
    return 'the host header names another host than :authority';
  }
  return undefined;
}
