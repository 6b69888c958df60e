// The server side of HTTP/1.1 in a proxy listener: reads request heads, frames request
// bodies (forwarding them as bytes), runs each request through the listener's pipeline,
// and serves kept-alive and pipelined requests one at a time, in order.
import type { Http1Options } from '../listeners/listener-context.js';
export type { Http1Options } from '../listeners/listener-context.js';
import type net from 'node:net';
import { ChunkedFramer } from '../../http1/chunked.js';
import { ERRORS, type ErrorCode } from '../../errors.js';
import { errorResponse, Exchange, type ClientSide, type Handler, type PeerIdentity } from '../stack/exchange.js';
import { connectionPeer } from '../tls/connection-peer.js';
import { findHeadEnd, isFailure, parseRequestHead } from '../../http1/http1-parser.js';
import { LimitsRef, type ProxyLimits } from '../listeners/limits.js';
import { skipReadMore } from '../listeners/socket-tuning.js';

/** What a listener gives each of its HTTP/1.1 connections. */

const DEFAULT_OPTIONS: Http1Options = { limits: new LimitsRef() };

/** The sweep runs at least this often, and more often for short timeouts (see `add`). */
const MAX_SWEEP_MS = 5_000;
const MIN_SWEEP_MS = 10;
/** A timeout is enforced to within this fraction of itself (late, never early). */
const SWEEPS_PER_TIMEOUT = 6;

/**
 * Idle connections and slow request heads are found by one sweep over every
 * connection, rather than a timer per socket: Node re-arms a socket's timer on every
 * read and write, and that was a few percent of a sidecar's CPU at the bench's max
 * rate. The sweep keeps a coarse clock (`now`, the time of the last sweep) that
 * connections stamp themselves with for free: when their last exchange ended, and when
 * the first byte of a head arrived. A stamp is up to one period before the event, so a
 * deadline counts from the stamp plus a period: a timeout fires up to two periods late,
 * never early. The period is a sixth of the shortest timeout of any connection (at most
 * 5 s: with the default limits, 30 s and 120 s, one sweep every 5 s).
 */
const sweeper = {
  now: performance.now(),
  periodMs: MAX_SWEEP_MS,
  conns: new Set<HttpServerConnection>(),
  timer: undefined as NodeJS.Timeout | undefined,
  add(c: HttpServerConnection, limits: ProxyLimits): void {
    this.conns.add(c);
    const want = Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, Math.floor(Math.min(limits.requestHeaderTimeoutMs, limits.idleTimeoutMs) / SWEEPS_PER_TIMEOUT)));
    if (this.timer !== undefined && want >= this.periodMs) return;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.periodMs = this.timer === undefined ? want : Math.min(want, this.periodMs);
    this.now = performance.now();
    this.timer = setInterval(() => this.sweep(), this.periodMs);
    this.timer.unref();
  },
  delete(c: HttpServerConnection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  },
  sweep(): void {
    this.now = performance.now();
    for (const c of this.conns) c.closeIfIdle(this.now, this.periodMs);
  },
};

export class HttpServerConnection implements ClientSide {
  readonly socket: net.Socket;
  /** The verified workload of an inbound mutual TLS connection (once per connection); undefined for plaintext. */
  readonly peer: PeerIdentity | undefined;
  readonly #handler: Handler;
  readonly #limits: ProxyLimits;
  readonly #refused: ((token: string) => void) | undefined;
  #buf: Buffer | undefined;
  #scanFrom = 0;
  #ex: Exchange | undefined;
  #inBody = false;
  #remaining = 0;
  #framer: ChunkedFramer | undefined;
  #bodyPaused = false;
  #closing = false;
  /** The sweep's clock when this connection was last busy. */
  #idleSince = sweeper.now;
  /** The sweep's clock when the head being read began to arrive; -1: none in progress. */
  #headSince = -1;

  /** Reports an exception in handling this connection, and ends the connection (by default, just that). */
  readonly #onFailure: (err: unknown) => void;

  /**
   * `first`: bytes already read from the socket (by protocol detection), handled before any more.
   * `opts`: the listener's limits and refusal counter.
   * `failed`: called when handling this connection's bytes or requests threw; it must
   * end the connection (the sidecar also counts and logs it). The exception goes no further.
   */
  constructor(socket: net.Socket, handler: Handler, first?: Buffer, opts: Http1Options = DEFAULT_OPTIONS, failed?: (err: unknown) => void) {
    this.socket = socket;
    this.peer = connectionPeer(socket);
    this.#handler = handler;
    this.#limits = opts.limits.current;
    this.#refused = opts.refused;
    this.#onFailure = failed ?? (() => socket.destroy());
    socket.setNoDelay(true);
    socket.setTimeout(0); // protocol detection's timer, if any: the sweep takes over
    skipReadMore(socket);
    sweeper.add(this, this.#limits);
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
      sweeper.delete(this);
      const ex = this.#ex;
      if (ex !== undefined && !ex.finished) {
        try {
          // The client went away mid-exchange: drop the upstream connection too.
          ex.abandon('client-closed');
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
    // Closing (refused, or ending after a response): no more heads are read, nor kept.
    if (this.#closing) return;
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
    const max = this.#limits.maxRequestHeadBytes;
    if (end === -1) {
      if (buf.length > max) return this.#reject('TRELLIS_E_HEAD_TOO_LARGE', { limit: max });
      this.#scanFrom = buf.length - 3;
      // The header timeout runs from the first byte of a head that did not come whole.
      if (this.#headSince === -1) this.#headSince = sweeper.now;
      return;
    }
    if (end > max) return this.#reject('TRELLIS_E_HEAD_TOO_LARGE', { limit: max });
    this.#headSince = -1;
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

  /**
   * Answers a request that could not be parsed (or whose head came too slowly), then
   * closes: the stream can't be trusted.
   */
  #reject(code: 'TRELLIS_E_BAD_REQUEST' | 'TRELLIS_E_HEAD_TOO_LARGE' | 'TRELLIS_E_HEADER_TIMEOUT', params: Record<string, unknown>): void {
    this.#buf = undefined;
    this.#closing = true;
    this.#headSince = -1;
    this.#refused?.(ERRORS[code satisfies ErrorCode].token);
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
    sweeper.delete(this);
    return rest;
  }

  /**
   * The sweep's checks at time `now` (its coarse clock; `slack`: how stale a stamp may
   * be). With no exchange in progress: a head arriving for longer than the header
   * timeout is answered 408 and closed; a connection idle for longer than the idle
   * timeout (a head trickling in counts as idle) is closed without an answer.
   */
  closeIfIdle(now: number, slack = 0): void {
    if (this.#ex !== undefined) return;
    const limits = this.#limits;
    if (this.#headSince !== -1 && !this.#closing && now - this.#headSince - slack >= limits.requestHeaderTimeoutMs) {
      return this.#reject('TRELLIS_E_HEADER_TIMEOUT', { ms: limits.requestHeaderTimeoutMs });
    }
    if (now - this.#idleSince - slack >= limits.idleTimeoutMs) this.socket.destroy();
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
    this.#idleSince = sweeper.now;
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
