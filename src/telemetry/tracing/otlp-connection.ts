// The exporter's one keep-alive connection to its collector: an OTLP/HTTP POST written
// as a prebuilt head and the batch's bytes, and the answer framed by the HTTP/1.1
// response parser the proxy's codec uses (src/http1/), nothing decoded but the status.
//
// Why not node:http: a batch leaves once a second, so the client code it runs never
// warms up, and a POST through http.request (ClientRequest, the agent, header checks,
// IncomingMessage and its stream events) and its answer cost about 1.6 ms of CPU per
// batch on the bench machine, against 0.7 ms this way (a loop of 100 batches at 100 ms
// intervals to a local server, process CPU minus the same loop posting nothing, two
// runs each, 2026-12-06). That work runs on the proxy's one thread between requests,
// every second in every proxy, and requests arriving meanwhile wait behind it. This path
// costs a string concatenation, one corked write and a head parse that the proxy's
// request path keeps warm.
import net from 'node:net';
import tls from 'node:tls';
import { ChunkedFramer } from '../../http1/chunked.js';
import { findHeadEnd, isFailure, MAX_HEAD_BYTES, parseResponseHead } from '../../http1/http1-parser.js';

/** What became of one POST. */
export interface PostResult {
  readonly ok: boolean;
  /** Why not, for the exporter's error log; '' when ok. */
  readonly reason: string;
  /** Every byte of the body was handed to the kernel (its buffer may be reused). */
  readonly bodyWritten: boolean;
}

/** Headers a caller may not set: the connection frames the request itself. */
const FRAMING_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'content-type']);

/** A header value that could break the head (CR, LF, NUL), and what a header name may be (RFC 9110 token). */
const UNSAFE = /[\r\n\0]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class OtlpConnection {
  readonly #url: URL;
  readonly #timeoutMs: number;
  /** The head up to the Content-Length value. */
  readonly #headPrefix: string;
  #socket: net.Socket | undefined;
  /** The answer being read, and its resolver; one POST at a time. */
  #pending: Pending | undefined;
  #closed = false;
  /** Why no POST can be made to this endpoint (every batch fails with it); '' when it can. */
  readonly #unusable: string;

  /** Never throws: an endpoint or header it can't use makes every POST fail with the reason. */
  constructor(url: URL, headers: Readonly<Record<string, string>>, timeoutMs: number) {
    this.#url = url;
    this.#timeoutMs = timeoutMs;
    let unusable = url.protocol === 'http:' || url.protocol === 'https:' ? '' : `collector endpoint ${url.protocol}: only http: and https: are supported`;
    let head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (FRAMING_HEADERS.has(name.toLowerCase())) continue;
      if (!TOKEN.test(name) || UNSAFE.test(value)) unusable ||= `collector header ${JSON.stringify(name.slice(0, 64))}: invalid characters`;
      else head += `${name}: ${value}\r\n`;
    }
    this.#unusable = unusable;
    this.#headPrefix = `${head}Content-Type: application/json\r\nContent-Length: `;
  }

  /** Posts one body; resolves (never rejects) when the collector answered, failed or timed out. */
  post(body: Buffer): Promise<PostResult> {
    if (this.#unusable !== '') return Promise.resolve({ ok: false, reason: this.#unusable, bodyWritten: false });
    if (this.#closed) return Promise.resolve({ ok: false, reason: 'exporter closed', bodyWritten: false });
    if (this.#pending !== undefined) return Promise.resolve({ ok: false, reason: 'a batch is already in flight', bodyWritten: false });
    const socket = this.#socket ?? this.#connect();
    return new Promise<PostResult>((resolve) => {
      const p: Pending = { resolve, buf: undefined, len: 0, head: undefined, remaining: 0, framer: undefined, written: false, timer: undefined };
      p.timer = setTimeout(() => this.#finish(p, false, `no answer in ${this.#timeoutMs} ms`, true), this.#timeoutMs);
      p.timer.unref();
      this.#pending = p;
      // An idle connection does not keep the process alive; one with a batch in flight does.
      socket.ref();
      socket.cork();
      socket.write(`${this.#headPrefix}${body.length}\r\n\r\n`, 'latin1');
      socket.write(body, (err) => {
        if (!err) p.written = true;
      });
      socket.uncork();
    });
  }

  /** Ends the connection; a POST in flight fails. */
  close(): void {
    this.#closed = true;
    const p = this.#pending;
    if (p !== undefined) this.#finish(p, false, 'exporter closed', true);
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #connect(): net.Socket {
    const url = this.#url;
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const socket =
      url.protocol === 'https:'
        ? tls.connect({ host, port, ...(net.isIP(host) === 0 ? { servername: host } : {}), ALPNProtocols: ['http/1.1'] })
        : net.connect({ host, port });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk));
    const gone = (reason: string): void => {
      // A connection already dropped (and maybe replaced) has no batch of its own.
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      const p = this.#pending;
      if (p !== undefined) this.#finish(p, false, reason, false);
    };
    socket.on('error', (e) => gone(e.message));
    socket.on('close', () => gone('the collector closed the connection'));
    this.#socket = socket;
    return socket;
  }

  #onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.#socket) return;
    const p = this.#pending;
    if (p === undefined) {
      // Bytes nobody asked for: the connection's framing can't be trusted any more.
      this.#drop(socket);
      return;
    }
    let data = chunk;
    let from = 0;
    while (p.head === undefined) {
      // Gather the head (bounded), then parse it.
      const scanFrom = Math.max(0, p.len - 3);
      if (p.buf === undefined || p.len + data.length - from > p.buf.length) {
        // Bounded: a read is at most 64 KB, and a head not ended within 16 KB fails below.
        const need = p.len + data.length - from;
        const grown = Buffer.allocUnsafe(Math.max(1024, need));
        if (p.buf !== undefined) p.buf.copy(grown, 0, 0, p.len);
        p.buf = grown;
      }
      data.copy(p.buf, p.len, from);
      p.len += data.length - from;
      const end = findHeadEnd(p.buf, scanFrom, p.len);
      if (end < 0) {
        if (p.len > MAX_HEAD_BYTES) return this.#finish(p, false, 'the collector answered a head over 16 KB', true);
        return;
      }
      const head = parseResponseHead(p.buf, end);
      if (isFailure(head)) return this.#finish(p, false, `the collector's answer is not HTTP/1.1: ${head.reason}`, true);
      if (head.status < 200) {
        // 100 Continue and other interim answers: the real one follows.
        if (head.status === 101) return this.#finish(p, false, 'the collector switched protocols', true);
        data = p.buf.subarray(end, p.len);
        from = 0;
        p.buf = undefined;
        p.len = 0;
        continue;
      }
      p.head = { status: head.status, close: head.close };
      // The rest of what was read is the body (and possibly junk after it).
      data = p.buf.subarray(end, p.len);
      from = 0;
      p.buf = undefined;
      // 204 and 304 never carry a body, whatever their head says (RFC 9112 §6.3).
      if (head.status === 204 || head.status === 304) p.remaining = 0;
      else if (head.chunked) p.framer = new ChunkedFramer();
      else if (head.contentLength >= 0) p.remaining = head.contentLength;
      else p.remaining = -1; // until close
      return this.#body(p, data, from);
    }
    this.#body(p, data, from);
  }

  #body(p: Pending, data: Buffer, from: number): void {
    const head = p.head!;
    let end: number;
    if (p.framer !== undefined) {
      end = p.framer.feed(data, from, data.length);
      if (p.framer.error !== null) return this.#finish(p, false, `the collector's chunked answer is malformed: ${p.framer.error}`, true);
      if (end < 0) return;
    } else if (p.remaining >= 0) {
      const n = Math.min(p.remaining, data.length - from);
      p.remaining -= n;
      end = from + n;
      if (p.remaining > 0) return;
    } else {
      // Read until the collector closes: this connection ends with the answer.
      return;
    }
    const ok = head.status >= 200 && head.status < 300;
    // More bytes than the answer, or an announced close: the connection is not reused.
    this.#finish(p, ok, ok ? '' : `collector answered ${head.status}`, head.close || end < data.length);
  }

  #drop(socket: net.Socket): void {
    if (this.#socket === socket) this.#socket = undefined;
    socket.destroy();
  }

  #finish(p: Pending, ok: boolean, reason: string, dropConnection: boolean): void {
    if (this.#pending !== p) return;
    this.#pending = undefined;
    clearTimeout(p.timer);
    // An answer read until close ends when the connection does: it counts as the answer.
    const untilClose = p.head !== undefined && p.framer === undefined && p.remaining < 0;
    if (untilClose && !ok && reason === 'the collector closed the connection') {
      const status = p.head!.status;
      ok = status >= 200 && status < 300;
      reason = ok ? '' : `collector answered ${status}`;
    }
    if (dropConnection && this.#socket !== undefined) this.#drop(this.#socket);
    else this.#socket?.unref();
    p.resolve({ ok, reason, bodyWritten: p.written });
  }
}

interface Pending {
  readonly resolve: (r: PostResult) => void;
  /** The head as it arrives, until it is complete. */
  buf: Buffer | undefined;
  len: number;
  head: { readonly status: number; readonly close: boolean } | undefined;
  /** Body bytes still to come (Content-Length), or -1: until the connection closes. */
  remaining: number;
  framer: ChunkedFramer | undefined;
  written: boolean;
  timer: NodeJS.Timeout | undefined;
}
