// HTTP/1.1 transport for load runs: N keep-alive connections on raw `net` sockets, one
// request in flight per connection (no pipelining), the same pre-built request bytes
// written each time. Just enough of the protocol to frame responses (status,
// Content-Length, chunked, read-until-close, Connection: close); anything else is a
// protocol failure and costs the connection, which is reopened.
import net from 'node:net';
import type { LoopbackTarget } from './target.js';
import type { Transport, TransportEvents } from './transport.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** A malformed response. */
export class ResponseProtocolError extends Error {}

interface Head {
  status: number;
  close: boolean;
  length: number | 'chunked' | 'eof';
  bodyStart: number;
}

/** Incremental response reader for one connection. */
export class ResponseReader {
  #buf: Buffer = Buffer.alloc(0);
  #head: Head | undefined;
  /** Responses to HEAD have headers that describe a body they do not carry. */
  readonly #noBody: boolean;

  constructor(noBody = false) {
    this.#noBody = noBody;
  }

  reset(): void {
    this.#buf = Buffer.alloc(0);
    this.#head = undefined;
  }

  /** True once some bytes of the current response have arrived. */
  get started(): boolean {
    return this.#buf.length > 0 || this.#head !== undefined;
  }

  /**
   * Feeds bytes; returns a finished response, or undefined when more bytes are needed.
   * Throws {@link ResponseProtocolError} on a malformed response.
   */
  push(chunk: Buffer): { status: number; close: boolean } | undefined {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    if (!this.#head) {
      if (this.#buf.length >= 5 && this.#buf.toString('latin1', 0, 5) !== 'HTTP/') {
        // e.g. an HTTP/2-only server's frames: say so now instead of waiting for the close.
        throw new ResponseProtocolError('the answer is not HTTP/1.x');
      }
      const end = this.#buf.indexOf(CRLFCRLF);
      if (end < 0) {
        if (this.#buf.length > 64 * 1024) throw new ResponseProtocolError('response head larger than 64 KiB');
        return undefined;
      }
      const lines = this.#buf.toString('latin1', 0, end).split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
      if (!m) throw new ResponseProtocolError(`bad status line "${(lines[0] ?? '').slice(0, 40)}"`);
      const status = Number(m[1]);
      let length: number | 'chunked' | 'eof' = 'eof';
      let close = lines[0]!.startsWith('HTTP/1.0');
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!;
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line
          .slice(colon + 1)
          .trim()
          .toLowerCase();
        if (name === 'content-length') {
          if (!/^\d+$/.test(value)) throw new ResponseProtocolError(`bad Content-Length "${value}"`);
          if (length !== 'chunked') length = Number(value);
        } else if (name === 'transfer-encoding' && value.includes('chunked')) length = 'chunked';
        else if (name === 'connection') close = value.includes('close') ? true : value.includes('keep-alive') ? false : close;
      }
      if (this.#noBody || status === 204 || status === 304 || (status >= 100 && status < 200)) length = 0;
      if (status >= 100 && status < 200) {
        // An interim response (100 Continue): skip it, the final one follows.
        this.#buf = this.#buf.subarray(end + 4);
        return this.#buf.length > 0 ? this.push(Buffer.alloc(0)) : undefined;
      }
      this.#head = { status, close, length, bodyStart: end + 4 };
    }
    const head = this.#head;
    let consumed: number | undefined;
    if (typeof head.length === 'number') {
      if (this.#buf.length >= head.bodyStart + head.length) consumed = head.bodyStart + head.length;
    } else if (head.length === 'chunked') {
      consumed = chunkedEnd(this.#buf, head.bodyStart);
    } else {
      return undefined; // read-until-close: finished by endOfStream()
    }
    if (consumed === undefined) return undefined;
    this.#buf = this.#buf.subarray(consumed);
    this.#head = undefined;
    return { status: head.status, close: head.close };
  }

  /** At end of stream: the response if its body was delimited by the close. */
  endOfStream(): { status: number; close: boolean } | undefined {
    if (this.#head && this.#head.length === 'eof') return { status: this.#head.status, close: true };
    return undefined;
  }
}

/** Offset just past a complete chunked body starting at `start`, or undefined if incomplete. */
export function chunkedEnd(buf: Buffer, start: number): number | undefined {
  let pos = start;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos, 'latin1');
    if (eol < 0) return undefined;
    const sizeText = buf.toString('latin1', pos, eol).split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new ResponseProtocolError(`bad chunk size "${sizeText.slice(0, 20)}"`);
    const size = parseInt(sizeText, 16);
    if (size === 0) {
      // The last-chunk line is followed by trailers (usually none) and an empty line,
      // so the body ends at the first CRLFCRLF from the last-chunk line's CRLF.
      const end = buf.indexOf(CRLFCRLF, eol);
      return end < 0 ? undefined : end + 4;
    }
    pos = eol + 2 + size + 2;
    if (pos > buf.length) return undefined;
  }
}

interface Conn {
  socket: net.Socket | undefined;
  open: boolean;
  reader: ResponseReader;
  /** Index of the request in flight, or -1. */
  inflight: number;
  /** Connect attempts that failed in a row (for the reconnect backoff). */
  failures: number;
  /** Responses on the current socket (a socket that closes before any is not a success). */
  served: number;
  /** The current socket broke the protocol. */
  protocolError: boolean;
}

/** Longest pause between attempts to reach a target that refuses connections. */
const MAX_BACKOFF_MS = 1000;

export class Http1Transport implements Transport {
  readonly #target: LoopbackTarget;
  readonly #request: Buffer;
  readonly #events: TransportEvents;
  readonly #timeoutMs: number;
  readonly #conns: Conn[] = [];
  readonly #idle: Conn[] = [];
  #closed = false;
  #lastFailure: 'connect' | 'reset' | 'protocol' = 'connect';

  /**
   * @param request the complete request bytes, written as they are for every request
   * @param noBody  true for HEAD requests (responses carry no body)
   */
  constructor(target: LoopbackTarget, request: Buffer, connections: number, timeoutMs: number, events: TransportEvents, noBody = false) {
    this.#target = target;
    this.#request = request;
    this.#events = events;
    this.#timeoutMs = timeoutMs;
    for (let k = 0; k < connections; k++) {
      this.#conns.push({ socket: undefined, open: false, reader: new ResponseReader(noBody), inflight: -1, failures: 0, served: 0, protocolError: false });
    }
  }

  async open(): Promise<void> {
    await Promise.race([Promise.all(this.#conns.map((c) => this.#connect(c))), new Promise((r) => setTimeout(r, this.#timeoutMs).unref())]);
  }

  get unavailable(): 'connect' | 'reset' | 'protocol' | undefined {
    return this.#conns.every((c) => !c.open && c.failures > 0) ? this.#lastFailure : undefined;
  }

  trySend(i: number): boolean {
    const c = this.#idle.pop();
    if (!c) return false;
    c.inflight = i;
    c.socket!.write(this.#request);
    return true;
  }

  cancel(i: number): void {
    for (const c of this.#conns) {
      if (c.inflight === i) {
        c.inflight = -1;
        c.socket?.destroy(); // the response may still come: only a new connection is clean
      }
    }
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#conns) {
      c.inflight = -1;
      c.socket?.destroy();
    }
    this.#idle.length = 0;
  }

  #release(c: Conn): void {
    c.inflight = -1;
    this.#idle.push(c);
    this.#events.ready();
  }

  #complete(c: Conn, res: { status: number; close: boolean }): void {
    const i = c.inflight;
    c.inflight = -1;
    c.served++;
    this.#events.response(i, res.status);
    if (res.close) c.socket?.destroy();
    else if (!this.#closed) this.#release(c);
  }

  #connect(c: Conn): Promise<void> {
    return new Promise((resolve) => {
      c.open = false;
      c.served = 0;
      c.protocolError = false;
      c.reader.reset();
      const socket = net.connect({ host: this.#target.host, port: this.#target.port });
      c.socket = socket;
      socket.setNoDelay(true);
      socket.once('connect', () => {
        c.open = true;
        resolve();
        if (!this.#closed) this.#release(c);
      });
      socket.on('data', (chunk: Buffer) => {
        if (c.inflight < 0) return; // unsolicited bytes (or an answer to a cancelled request): ignore
        let res: ReturnType<ResponseReader['push']>;
        try {
          res = c.reader.push(chunk);
        } catch (err) {
          if (!(err instanceof ResponseProtocolError)) throw err;
          const i = c.inflight;
          c.inflight = -1;
          c.protocolError = true;
          this.#events.failure(i, 'protocol');
          socket.destroy();
          return;
        }
        if (res) this.#complete(c, res);
      });
      socket.on('end', () => {
        const res = c.reader.endOfStream();
        if (res && c.inflight >= 0) this.#complete(c, res);
      });
      socket.on('error', () => {
        /* handled on close */
      });
      socket.on('close', () => {
        if (c.socket !== socket) return;
        const wasOpen = c.open;
        c.open = false;
        c.socket = undefined;
        const idx = this.#idle.indexOf(c);
        if (idx >= 0) this.#idle.splice(idx, 1);
        if (c.inflight >= 0) {
          const i = c.inflight;
          c.inflight = -1;
          this.#events.failure(i, 'reset');
        }
        if (!wasOpen) resolve();
        // A refused connect, or one closed before answering anything, backs off; a
        // connection that served requests and then closed is replaced at once.
        c.failures = wasOpen && c.served > 0 ? 0 : c.failures + 1;
        if (c.failures > 0) this.#lastFailure = !wasOpen ? 'connect' : c.protocolError ? 'protocol' : 'reset';
        if (this.#closed) return;
        const delay = c.failures === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 10 * 2 ** (c.failures - 1));
        setTimeout(() => {
          if (!this.#closed) void this.#connect(c);
        }, delay).unref();
      });
    });
  }
}
