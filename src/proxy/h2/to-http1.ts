// An HTTP/2 stream carried to an app that speaks only HTTP/1.1. The HTTP/1.1 forwarder
// (pool.ts, upstream-connection.ts) takes the request as it takes any, over the same
// pooled app connections, and this adapter is only the codec change at the bottom of
// the inbound stack, as Envoy's HTTP/1.1 codec under an HTTP/2 listener and
// linkerd2-proxy's downgrade of HTTP/2 to HTTP/1.1 on the hop to the app are:
//
// - request: pseudo-headers become the request line and Host; the body is piped under
//   backpressure (the forwarder pauses the stream, HTTP/2 flow control holds the
//   client), framed chunked with the client's trailers when it has no content-length;
// - response: the forwarder writes the app's HTTP/1.1 bytes, already framed and
//   checked, to `Http1Leg.socket`, which reads them back as HTTP/2: the status and
//   headers without the hop-by-hop ones, the body out of its framing, chunked trailers
//   as HTTP/2 trailers.
//
// The HTTP/1.1 leg is an Exchange of its own (the forwarder's state lives on it); its
// outcome is the HTTP/2 exchange's: errors go through the outer exchange's fail(),
// so the client sees them as it sees every other.
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import { Exchange, type AttemptLink, type ClientSide, type Handler } from '../stack/exchange.js';
import { withEndpoint, type Picked } from '../stack/decisions.js';
import { findHeadEnd, MAX_HEAD_BYTES, type RequestHead } from '../../http1/http1-parser.js';
import type { ErrorCode } from '../../errors.js';
import { endpointKey } from '../balancer/balancer.js';
import type { H2ServerStream } from './server-stream.js';
import { addField } from './header-fields.js';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * What a field value may not hold, in HTTP/2 (RFC 9113 §8.2.1) as nghttp2 checks it:
 * control characters other than HTAB. node:http2 sends such a value unchecked, and the
 * client's side resets the stream; an HTTP/1.1 app could read a CR or LF as a new line.
 */
const UNSAFE_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** A request target in a request line: visible ASCII, no space. */
const TARGET = /^[!-~]+$/;

/** Headers no HTTP/2 message carries (RFC 9113 §8.2.2), plus TE (HTTP/1.1 hop-by-hop), Host (written from :authority) and HTTP2-Settings. */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings']);
/** Fields a trailer section must not carry (RFC 9110 §6.5.1: framing, routing, connection handling). */
const NOT_TRAILERS = new Set([...NOT_FORWARDED, 'content-length', 'trailer']);

const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * The terminal for an HTTP/2 exchange whose app speaks HTTP/1.1: builds the HTTP/1.1
 * leg and hands it to `forward`, the HTTP/1.1 forwarder.
 */
export function toHttp1(forward: Handler<Picked>): Handler<Picked> {
  return (ex) => {
    const client = ex.client as H2ServerStream;
    // What the layers above edited (a stripped identity or token, route filters: lines, path
    // and query) and added (`extraHead`: the verified caller, the trace context) goes into the
    // HTTP/1.1 head, as the HTTP/1.1 and HTTP/2 forwarders send it.
    const edits = ex.headEdits;
    const view: RequestHead = edits === undefined ? ex.req : { ...ex.req, lines: edits.lines, target: edits.target, path: edits.path };
    const request = http1Request(view, client.bodyless, endpointKey(ex.endpoint), ex.extraHead);
    if (typeof request === 'string') return ex.fail('TRELLIS_E_BAD_REQUEST', { reason: request });
    const leg = new Http1Leg(ex, client);
    const inner = withEndpoint(new Exchange(leg, request.req, request.head, client.bodyless), ex.endpoint);
    inner.service = ex.service;
    inner.source = ex.source;
    inner.requestBodyDone = client.bodyless;
    // The leg's outcomes are the HTTP/2 exchange's: its layers decide on them.
    inner.back = (_inner, o) => {
      if (o.kind === 'end') return true;
      const deliver = ex.report(o);
      if (o.kind !== 'head' && ex.finished) leg.ended();
      return deliver;
    };
    ex.link = leg.link;
    leg.start(inner);
    forward(inner);
  };
}

/** The HTTP/1.1 request for an HTTP/2 one, or why it can't be one. */
export function http1Request(h2: RequestHead, bodyless: boolean, address: string, extraHead = ''): { req: RequestHead; head: Buffer } | string {
  const { method, target } = h2;
  if (method === 'CONNECT') return 'CONNECT is not carried to an HTTP/1.1 app';
  if (!TOKEN.test(method)) return 'invalid :method';
  if (!TARGET.test(target) || (target.charCodeAt(0) !== 47 /* / */ && !(target === '*' && method === 'OPTIONS'))) return 'invalid :path';
  const host = h2.host || address;
  if (!TARGET.test(host)) return 'invalid :authority';
  // A body of unknown length goes chunked (HTTP/1.1 has no other way to end it on a kept-alive connection).
  const chunked = !bodyless && h2.contentLength < 0;
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const line of h2.lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (NOT_FORWARDED.has(name)) continue;
    if (!TOKEN.test(name) || UNSAFE_VALUE.test(line)) return `invalid header ${TOKEN.test(name) ? name : ''}`.trimEnd();
    head += `${line}\r\n`;
  }
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  head += `${extraHead}\r\n`;
  const bytes = Buffer.from(head, 'latin1');
  const req: RequestHead = {
    method,
    target,
    path: h2.path,
    minor: 1,
    host,
    contentLength: h2.contentLength,
    chunked,
    keepAlive: true,
    upgrade: false,
    rewrite: false,
    lines: h2.lines,
    headBytes: bytes.length,
  };
  return { req, head: bytes };
}

/** One chunk of a chunked body. */
function chunkOf(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, CRLF]);
}

/** The last chunk, with the client's trailers (those HTTP/1.1 allows) as the trailer section. */
function lastChunk(trailers: http2.IncomingHttpHeaders | undefined): Buffer {
  let s = '0\r\n';
  if (trailers !== undefined) {
    for (const name in trailers) {
      if (name.charCodeAt(0) === 58 /* : */ || NOT_TRAILERS.has(name) || !TOKEN.test(name)) continue;
      const v = trailers[name];
      for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined && !UNSAFE_VALUE.test(x)) s += `${name}: ${x}\r\n`;
    }
  }
  return Buffer.from(`${s}\r\n`, 'latin1');
}

/** The client side of the HTTP/1.1 leg: the HTTP/2 stream, as the HTTP/1.1 forwarder sees a client. */
class Http1Leg implements ClientSide {
  readonly socket: ResponseToH2;
  readonly #outer: Exchange;
  readonly #client: H2ServerStream;
  #inner: Exchange | undefined;

  constructor(outer: Exchange, client: H2ServerStream) {
    this.#outer = outer;
    this.#client = client;
    this.socket = new ResponseToH2(outer, client, (code, reason) => this.#abort(code, reason));
  }

  /** The HTTP/2 exchange's view of the attempt: the HTTP/1.1 connection's, given up with the leg. */
  readonly link: AttemptLink = new LegLink(this);

  /** The HTTP/1.1 connection's attempt, while one is in flight. */
  get innerLink(): AttemptLink | undefined {
    return this.#inner?.link;
  }

  /** The exchange was answered (or given up) above the leg: the leg and its app connection end. */
  ended(): void {
    const inner = this.#inner;
    if (inner !== undefined && !inner.finished) {
      inner.finished = true;
      const link = inner.link;
      inner.link = undefined;
      link?.cancel();
    }
    this.socket.destroy();
  }

  /** Pipes the request body (if any) into the leg, and ties the leg to the stream's life. */
  start(inner: Exchange): void {
    this.#inner = inner;
    const stream = this.#client.stream;
    stream.once('close', () => {
      // The client reset the stream (or it ended): nothing more of the leg is wanted.
      if (!inner.finished) inner.errorToken ||= 'client-closed';
      this.ended();
    });
    if (this.#client.bodyless) return;
    const chunked = inner.req.chunked;
    stream.on('data', (c: Buffer) => {
      // An empty chunk would end a chunked body; a finished leg (answered early) discards the rest.
      if (c.length === 0 || inner.finished) return;
      inner.writeBody(chunked ? chunkOf(c) : c);
    });
    stream.once('end', () => {
      if (chunked && !inner.finished) inner.writeBody(lastChunk(this.#client.trailers));
      inner.requestBodyDone = true;
    });
  }

  /** The response ended (the forwarder finished the leg): end the HTTP/2 response after what is still being written. */
  exchangeDone(inner: Exchange): void {
    if (this.#outer.finished) return; // failed: the outer exchange answered already
    // Answered before the whole request body came: read the rest and drop it, so the client is not stalled.
    if (!inner.requestBodyDone) this.resumeBody();
    this.socket.end();
  }

  resumeBody(): void {
    this.#client.stream.resume();
  }

  pauseBody(): void {
    this.#client.stream.pause();
  }

  detach(): Buffer | undefined {
    return undefined;
  }

  /** The forwarder's errors (connect refused, reset, timeout) are the HTTP/2 exchange's. */
  failStream(_inner: Exchange, code: ErrorCode, params: Record<string, unknown>, status?: number, grpcStatus?: number): void {
    this.socket.destroy();
    this.#outer.fail(code, params, status, grpcStatus);
  }

  respondStream(_inner: Exchange, status: number, lines: string): void {
    this.#outer.respond(status, lines);
  }

  /** A response that can't be told in HTTP/2: the leg and its app connection end, the client hears why. */
  #abort(code: ErrorCode, reason: string): void {
    this.ended();
    this.#outer.fail(code, { address: this.#outer.endpoint === undefined ? '' : endpointKey(this.#outer.endpoint), reason });
  }
}

/** The leg's HTTP/1.1 attempt as the HTTP/2 exchange's layers see it: its times, and giving it up with the leg. */
class LegLink implements AttemptLink {
  readonly ready = false;
  readonly #leg: Http1Leg;
  constructor(leg: Http1Leg) {
    this.#leg = leg;
  }
  get sentAt(): number {
    return this.#leg.innerLink?.sentAt ?? 0;
  }
  get headTimeoutMs(): number {
    return this.#leg.innerLink?.headTimeoutMs ?? 0;
  }
  write(): boolean {
    return true; // the body goes through the leg's own exchange
  }
  cancel(): void {
    this.#leg.ended();
  }
}

const enum Body {
  None,
  Length,
  Chunked,
  UntilClose,
}

/**
 * Where the HTTP/1.1 forwarder writes the app's response: reads it back as HTTP/2 on
 * the client's stream. A write is called back once the stream has taken its bytes
 * (which may be views of the forwarder's read buffer, so they must not be reused
 * before), so a stream held by flow control holds the forwarder, and the app.
 */
class ResponseToH2 extends Duplex {
  readonly #outer: Exchange;
  readonly #client: H2ServerStream;
  readonly #abort: (code: ErrorCode, reason: string) => void;
  /** Bytes of a head not yet complete (copied: the forwarder reuses its buffer). */
  #partial: Buffer | undefined;
  #inBody = false;
  #body = Body.None;
  #decoder: ChunkedDecoder | undefined;
  #responded = false;

  constructor(outer: Exchange, client: H2ServerStream, abort: (code: ErrorCode, reason: string) => void) {
    super();
    this.#outer = outer;
    this.#client = client;
    this.#abort = abort;
    // A write after end() errors the stream; nothing does that today, and an unheard 'error' would end the process.
    this.on('error', () => {});
  }

  /** For what asks a client for its address (affinity by client address). */
  get remoteAddress(): string | undefined {
    return this.#client.socket.remoteAddress;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    try {
      this.#take(chunk, done);
    } catch (err) {
      // respond() refused what the app sent (a header value, a status): the app's fault, told as such.
      this.#abort('TRELLIS_E_UPSTREAM_PROTOCOL', `its HTTP/1.1 response can't be sent as HTTP/2: ${err instanceof Error ? err.message : String(err)}`);
      done();
    }
  }

  override _final(done: (error?: Error | null) => void): void {
    const s = this.#client.stream;
    if (!this.#responded) {
      this.#abort('TRELLIS_E_UPSTREAM_PROTOCOL', 'the response ended before its head');
    } else if (!s.destroyed && !s.writableEnded) {
      s.end();
    }
    done();
  }

  #take(chunk: Buffer, done: () => void): void {
    let buf = chunk;
    let from = 0;
    while (!this.#inBody) {
      if (this.#partial !== undefined) buf = Buffer.concat([this.#partial, buf]);
      const end = findHeadEnd(buf, 0, buf.length);
      if (end === -1) {
        if (buf.length > MAX_HEAD_BYTES) return this.#abort('TRELLIS_E_UPSTREAM_PROTOCOL', 'response head too large');
        this.#partial = Buffer.from(buf);
        return done();
      }
      this.#partial = undefined;
      const head = headOf(buf, end, this.#outer.req.method);
      if (typeof head === 'string') return this.#abort('TRELLIS_E_UPSTREAM_PROTOCOL', head);
      if (head === undefined) {
        // 1xx (100 Continue, 103 Early Hints): the body flows anyway; the final head follows.
        if (end === buf.length) return done();
        buf = buf.subarray(end);
        continue;
      }
      this.#respond(head);
      from = end;
    }
    if (from === buf.length || this.#body === Body.None) return done();
    const s = this.#client.stream;
    if (s.destroyed) return done();
    if (this.#body !== Body.Chunked) {
      this.#data(s, from === 0 ? buf : buf.subarray(from), done);
      return;
    }
    const decoder = this.#decoder!;
    const parts: Buffer[] = [];
    decoder.feed(buf, from, (part) => parts.push(part));
    if (decoder.error !== null) return this.#abort('TRELLIS_E_UPSTREAM_PROTOCOL', decoder.error);
    if (parts.length === 0) return done();
    for (let i = 0; i < parts.length - 1; i++) this.#data(s, parts[i]!, undefined);
    this.#data(s, parts[parts.length - 1]!, done);
  }

  /** Writes body bytes to the stream; `done` (the last write's) runs once the stream has taken them. */
  #data(s: http2.ServerHttp2Stream, part: Buffer, done: (() => void) | undefined): void {
    this.#outer.responseBytes += part.length;
    if (done === undefined) s.write(part);
    else s.write(part, () => done());
  }

  #respond(head: ResponseHead): void {
    const s = this.#client.stream;
    const outer = this.#outer;
    this.#inBody = true;
    this.#body = head.body;
    if (head.body === Body.Chunked) this.#decoder = new ChunkedDecoder();
    if (s.destroyed || s.headersSent) return;
    // respond() throws on what HTTP/2 can't carry (a NUL in a value): nothing is sent then, and the client gets a 502.
    s.respond(head.headers, { endStream: head.body === Body.None, waitForTrailers: head.body === Body.Chunked });
    outer.status = head.status;
    outer.responseStarted = true;
    this.#responded = true;
    if (head.body === Body.Chunked) {
      s.once('wantTrailers', () => {
        try {
          s.sendTrailers(this.#decoder?.trailers() ?? {});
        } catch {
          s.close(http2.constants.NGHTTP2_INTERNAL_ERROR); // a trailer value HTTP/2 refuses: the honest signal left is a reset
        }
      });
    }
  }
}

interface ResponseHead {
  readonly status: number;
  readonly headers: http2.OutgoingHttpHeaders;
  readonly body: Body;
}

/**
 * The HTTP/2 response head for an HTTP/1.1 one in `buf[0, end)`, undefined for a 1xx
 * (dropped), or why it can't be one. The forwarder has checked its framing already.
 */
function headOf(buf: Buffer, end: number, method: string): ResponseHead | undefined | string {
  const lines = buf.toString('latin1', 0, end - 4).split('\r\n');
  const status = Number(lines[0]!.slice(9, 12));
  if (status === 101) return 'it switched protocols (101) on an HTTP/2 request';
  if (status < 200) return undefined;
  if (status > 599) return `status ${status} has no HTTP/2 form`;
  const fields: [string, string][] = [];
  const drop = new Set(NOT_FORWARDED);
  let transferEncoding: string | undefined;
  let hasLength = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name)) return `invalid header name "${name.slice(0, 64)}"`;
    const value = line.slice(colon + 1).trim();
    if (UNSAFE_VALUE.test(value)) return `invalid value of header "${name}"`;
    // Headers that Connection names are hop-by-hop too (RFC 9110 §7.6.1).
    if (name === 'connection') for (const t of value.toLowerCase().split(',')) drop.add(t.trim());
    if (name === 'transfer-encoding') transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    if (name === 'content-length') hasLength = true;
    fields.push([name, value]);
  }
  let body: Body;
  if (method === 'HEAD' || status === 204 || status === 304) body = Body.None;
  else if (transferEncoding !== undefined) {
    // The forwarder reads a body with another coding to the close; its bytes would still be coded, which HTTP/2 can't say.
    if (transferEncoding.toLowerCase() !== 'chunked') return `transfer-coding "${transferEncoding.slice(0, 64)}" can't be carried over HTTP/2`;
    body = Body.Chunked;
  } else body = hasLength ? Body.Length : Body.UntilClose;
  const headers: http2.OutgoingHttpHeaders = { ':status': status };
  for (const [name, value] of fields) {
    if (drop.has(name)) continue;
    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); a 204 has none (RFC 9110 §8.6).
    if (name === 'content-length' && (body === Body.Chunked || status === 204 || headers['content-length'] !== undefined)) continue;
    // A repeated field stays repeated (set-cookie above all: it can't be combined); a
    // repeated singleton, which node:http2 refuses to send twice, is combined (RFC 9110 §5.3).
    addField(headers, name, value);
  }
  return { status, headers, body };
}

const enum Chunk {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  TrailerLf,
  Done,
}

/** Largest chunk-size line digits, and the largest trailer section, accepted. */
const MAX_SIZE_DIGITS = 12;

/**
 * Decodes a chunked body (RFC 9112 §7.1) as it streams: the data in order, as views of
 * the input, and the trailer section's fields at the end. Strict: a framing error stops it.
 */
export class ChunkedDecoder {
  #state = Chunk.Size;
  #remaining = 0;
  #digits = 0;
  #line = '';
  #trailerBytes = 0;
  readonly #trailers: [string, string][] = [];
  error: string | null = null;

  get done(): boolean {
    return this.#state === Chunk.Done;
  }

  /** Consumes `buf[from..]`, calling `data` with each piece of body data. */
  feed(buf: Buffer, from: number, data: (part: Buffer) => void): void {
    let i = from;
    const to = buf.length;
    while (i < to && this.error === null) {
      switch (this.#state) {
        case Chunk.Data: {
          const n = Math.min(this.#remaining, to - i);
          data(buf.subarray(i, i + n));
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) this.#state = Chunk.DataCr;
          continue;
        }
        case Chunk.Size: {
          const c = buf[i]!;
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) this.error = 'chunk size too large';
            this.#remaining = this.#remaining * 16 + v;
          } else if (this.#digits === 0) this.error = 'invalid chunk size';
          else if (c === 13) this.#state = Chunk.SizeLf;
          else if (c === 59 /* ; */ || c === 32 || c === 9) this.#state = Chunk.Ext;
          else this.error = 'invalid chunk size';
          break;
        }
        case Chunk.Ext:
          if (buf[i] === 13) this.#state = Chunk.SizeLf;
          else if (buf[i] === 10 || buf[i] === 0) this.error = 'invalid chunk extension';
          break;
        case Chunk.SizeLf:
          if (buf[i] !== 10) {
            this.error = 'bare CR in chunk size line';
            break;
          }
          this.#digits = 0;
          this.#state = this.#remaining === 0 ? Chunk.Trailer : Chunk.Data;
          break;
        case Chunk.DataCr:
          if (buf[i] !== 13) this.error = 'chunk data longer than its size';
          else this.#state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (buf[i] !== 10) this.error = 'missing LF after chunk data';
          else this.#state = Chunk.Size;
          break;
        case Chunk.Trailer: {
          const c = buf[i]!;
          if (c === 13) this.#state = Chunk.TrailerLf;
          else if (c === 10 || c === 0) this.error = 'invalid trailer';
          else if (++this.#trailerBytes > MAX_HEAD_BYTES) this.error = 'trailer section too large';
          else this.#line += String.fromCharCode(c);
          break;
        }
        case Chunk.TrailerLf: {
          if (buf[i] !== 10) {
            this.error = 'bare CR in trailer';
            break;
          }
          const line = this.#line;
          this.#line = '';
          if (line === '') {
            this.#state = Chunk.Done;
            break;
          }
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).toLowerCase();
          // A field that is no field (a pseudo-header, a bad name) is dropped: the body before it is whole.
          const value = line.slice(colon + 1).trim();
          if (colon > 0 && TOKEN.test(name) && !UNSAFE_VALUE.test(value)) this.#trailers.push([name, value]);
          this.#state = Chunk.Trailer;
          break;
        }
        case Chunk.Done:
          return; // bytes past the body: the forwarder never writes them
      }
      i++;
    }
  }

  /** The trailer fields HTTP/2 may carry, combined as headers are. */
  trailers(): http2.OutgoingHttpHeaders {
    const out: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of this.#trailers) {
      if (NOT_TRAILERS.has(name)) continue;
      const prev = out[name];
      out[name] = prev === undefined ? value : `${String(prev)}, ${value}`;
    }
    return out;
  }
}
