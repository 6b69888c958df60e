// The server side of HTTP/1.1 in a proxy listener: reads request heads, frames request
// bodies (forwarding them as bytes), runs each request through the listener's pipeline,
// and serves kept-alive and pipelined requests one at a time, in order.
import type net from 'node:net';
import { settleAttempts } from './attempt.js';
import { ChunkedFramer } from './chunked.js';
import { errorResponse, Exchange, type ClientSide, type Handler } from './exchange.js';
import { findHeadEnd, isFailure, MAX_HEAD_BYTES, parseRequestHead } from './http1-parser.js';
import { skipReadMore } from './socket-tuning.js';

/** A client connection with no request in progress is closed after this long. */
const IDLE_TIMEOUT_MS = 120_000;
const IDLE_SWEEP_MS = 5_000;

/**
 * Idle client connections are found by one sweep over them all, rather than a timer
 * per socket: Node re-arms a socket's timer on every read and write, and that was a
 * few percent of a sidecar's CPU at the bench's max rate. A connection remembers the
 * sweep's tick when its last exchange ended; one with no exchange in progress for
 * IDLE_TIMEOUT_MS (a request head trickling in counts as idle) is closed.
 */
const idleSweep = {
  tick: 0,
  conns: new Set<HttpServerConnection>(),
  timer: undefined as NodeJS.Timeout | undefined,
  add(c: HttpServerConnection): void {
    this.conns.add(c);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), IDLE_SWEEP_MS);
      this.timer.unref();
    }
  },
  delete(c: HttpServerConnection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  },
  sweep(): void {
    this.tick++;
    for (const c of this.conns) c.closeIfIdle(this.tick - IDLE_TIMEOUT_MS / IDLE_SWEEP_MS);
  },
};

export class HttpServerConnection implements ClientSide {
  readonly socket: net.Socket;
  readonly #handler: Handler;
  #buf: Buffer | undefined;
  #scanFrom = 0;
  #ex: Exchange | undefined;
  #inBody = false;
  #remaining = 0;
  #framer: ChunkedFramer | undefined;
  #bodyPaused = false;
  #closing = false;
  /** The idle sweep's tick when this connection was last busy. */
  #idleSince = idleSweep.tick;

  /** Reports an exception in handling this connection, and ends the connection (by default, just that). */
  readonly #onFailure: (err: unknown) => void;

  /**
   * `first`: bytes already read from the socket (by protocol detection), handled before any more.
   * `failed`: called when handling this connection's bytes or requests threw; it must
   * end the connection (the sidecar also counts and logs it). The exception goes no further.
   */
  constructor(socket: net.Socket, handler: Handler, first?: Buffer, failed?: (err: unknown) => void) {
    this.socket = socket;
    this.#handler = handler;
    this.#onFailure = failed ?? (() => socket.destroy());
    socket.setNoDelay(true);
    socket.setTimeout(0); // protocol detection's timer, if any: the idle sweep takes over
    skipReadMore(socket);
    idleSweep.add(this);
    socket.on('data', (chunk: Buffer) => {
      // The pipeline runs synchronously within: an exception ends this connection, never the process.
      try {
        this.#onData(chunk);
      } catch (err) {
        this.failed(err);
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      idleSweep.delete(this);
      const ex = this.#ex;
      if (ex !== undefined && !ex.finished) {
        try {
          // The client went away mid-exchange: drop the upstream connection too.
          ex.errorToken ||= 'client-closed';
          if (ex.attemptBackend !== undefined || ex.heldRetry !== undefined) settleAttempts(ex);
          ex.upstreamConn?.close();
          ex.finished = true;
          ex.observer?.(ex);
        } catch (err) {
          this.failed(err);
        }
      }
    });
    if (first !== undefined) {
      try {
        this.#onData(first);
      } catch (err) {
        this.failed(err);
      }
    }
  }

  /** Ends this connection after an exception in handling it (here, or in its exchange's upstream). */
  failed(err: unknown): void {
    this.#closing = true;
    this.#buf = undefined;
    this.#onFailure(err);
  }

  #onData(chunk: Buffer): void {
    if (this.#inBody) {
      this.#consumeBody(chunk, 0);
      return;
    }
    this.#buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    if (this.#ex !== undefined) {
      // A pipelined request: it waits until the current response is done.
      this.socket.pause();
      return;
    }
    this.#parseNext();
  }

  #parseNext(): void {
    const buf = this.#buf;
    if (buf === undefined || this.#closing) return;
    const end = findHeadEnd(buf, this.#scanFrom, buf.length);
    if (end === -1) {
      if (buf.length > MAX_HEAD_BYTES) return this.#reject('TRELLIS_E_HEAD_TOO_LARGE', { limit: MAX_HEAD_BYTES });
      this.#scanFrom = buf.length - 3;
      return;
    }
    if (end > MAX_HEAD_BYTES) return this.#reject('TRELLIS_E_HEAD_TOO_LARGE', { limit: MAX_HEAD_BYTES });
    this.#scanFrom = 0;
    this.#buf = undefined;
    const req = parseRequestHead(buf, end);
    if (isFailure(req)) return this.#reject('TRELLIS_E_BAD_REQUEST', { reason: req.reason });

    const ex = new Exchange(this, req, end === buf.length ? buf : buf.subarray(0, end));
    this.#ex = ex;
    if (req.chunked) {
      this.#framer = new ChunkedFramer();
      this.#inBody = true;
    } else if (req.contentLength > 0) {
      this.#remaining = req.contentLength;
      this.#inBody = true;
    } else {
      ex.requestBodyDone = true;
    }
    // Body bytes that came with the head are queued before dispatch, so the head and a
    // small body reach the upstream in one write (a server may answer a lone head early).
    const rest = end < buf.length ? buf.subarray(end) : undefined;
    const hasBody = this.#inBody;
    if (rest !== undefined && hasBody) this.#consumeBody(rest, 0);
    if (!ex.finished) this.#handler(ex); // a malformed chunked body may already have ended it
    if (rest !== undefined && !hasBody) {
      // A pipelined request: it waits until this exchange is done.
      this.#buf = rest;
      if (!ex.finished || this.#ex !== undefined) this.socket.pause();
      else this.#parseNext();
    }
  }

  #consumeBody(chunk: Buffer, from: number): void {
    const ex = this.#ex!;
    let end: number;
    if (this.#framer !== undefined) {
      end = this.#framer.feed(chunk, from, chunk.length);
      if (this.#framer.error) {
        this.#inBody = false;
        if (!ex.finished) ex.fail('TRELLIS_E_BAD_REQUEST', { reason: this.#framer.error });
        this.socket.destroy();
        return;
      }
    } else {
      const n = Math.min(this.#remaining, chunk.length - from);
      this.#remaining -= n;
      end = this.#remaining === 0 ? from + n : -1;
    }
    const upTo = end === -1 ? chunk.length : end;
    if (!ex.finished && upTo > from) ex.writeBody(from === 0 && upTo === chunk.length ? chunk : chunk.subarray(from, upTo));
    if (end === -1) return;
    this.#inBody = false;
    this.#framer = undefined;
    ex.requestBodyDone = true;
    if (end < chunk.length) {
      this.#buf = chunk.subarray(end);
      this.socket.pause();
    }
    if (ex.finished) this.exchangeDone(ex, ex.req.keepAlive);
  }

  /** Answers a request that could not be parsed, then closes: the stream can't be trusted. */
  #reject(code: 'TRELLIS_E_BAD_REQUEST' | 'TRELLIS_E_HEAD_TOO_LARGE', params: Record<string, unknown>): void {
    this.#buf = undefined;
    this.socket.end(errorResponse(code, params, true));
    this.socket.destroySoon?.();
  }

  pauseBody(): void {
    if (!this.#bodyPaused) {
      this.#bodyPaused = true;
      this.socket.pause();
    }
  }

  resumeBody(): void {
    if (this.#bodyPaused) {
      this.#bodyPaused = false;
      this.socket.resume();
    }
  }

  detach(): Buffer | undefined {
    const rest = this.#buf;
    this.#buf = undefined;
    this.#closing = true;
    this.socket.removeAllListeners('data');
    idleSweep.delete(this);
    return rest;
  }

  /** Closes the connection when no exchange has been in progress since sweep tick `before`. */
  closeIfIdle(before: number): void {
    if (this.#ex === undefined && this.#idleSince <= before) this.socket.destroy();
  }

  exchangeDone(ex: Exchange, keepAlive: boolean): void {
    if (this.#ex !== ex) return;
    if (this.#inBody) {
      // The response finished while the request body is still arriving (an early error
      // or reply): keep reading and discarding it, then carry on.
      if (!keepAlive) this.#closeAfterWrite();
      this.resumeBody();
      return;
    }
    this.#ex = undefined;
    this.#idleSince = idleSweep.tick;
    if (!keepAlive) {
      this.#closeAfterWrite();
      return;
    }
    this.#bodyPaused = false;
    // The next pipelined request runs from the end of this one (an upstream's event): guarded as data is.
    if (this.#buf !== undefined) {
      try {
        this.#parseNext();
      } catch (err) {
        this.failed(err);
      }
    }
    // resume() on a flowing stream still schedules a tick: only call it when paused.
    if (!this.#bodyPaused && !this.#closing && this.socket.isPaused()) this.socket.resume();
  }

  #closeAfterWrite(): void {
    this.#closing = true;
    this.#buf = undefined;
    this.socket.end();
  }
}
