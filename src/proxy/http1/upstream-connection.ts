// One keep-alive connection to an upstream (another sidecar, or the local app). It
// sends one exchange's request at a time, frames the response as it streams back to
// the client, and tells its pool whether it can be used again. What becomes of each
// attempt (a response head, a refused connect, a reset, a broken answer) it reports up
// the stack (stack/outcome.ts); the layers decide what to do about it.
import net from 'node:net';
import tls from 'node:tls';
import type { ErrorCode } from '../../errors.js';
import { ChunkedFramer } from '../../http1/chunked.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import type { AttemptLink, ClientBytes, Tunnel } from '../stack/exchange.js';
import { findHeadEnd, isFailure, MAX_HEAD_BYTES, parseResponseHead, responseHeadSlot, serializeRequestHead, switchedTo } from '../../http1/http1-parser.js';
import { editResponseHead } from '../filters/header-modifier.js';
import { IDEMPOTENT } from '../resilience/methods.js';
import { H1_REQUEST_TO_H2_APP, isServerPreface, SPEAKS_H2 } from '../h2/app-version.js';
import type { Picked } from '../stack/decisions.js';
import { END, type HeadOutcome } from '../stack/outcome.js';
import { holdsLastWrite } from '../listeners/socket-tuning.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const enum Body {
  None,
  Length,
  Chunked,
  UntilClose,
}

/** First read buffer of a connection; one that a read fills is replaced by the largest. */
const READ_BUFFER_BYTES = 16 * 1024;
const MAX_READ_BUFFER_BYTES = 64 * 1024;

/**
 * First-size read buffers of closed connections, for the next connections to take.
 * A closed connection's buffer is otherwise freed only when a major GC finds the dead
 * socket, and in bursty traffic (the bench's rounds: 50 new connections each) hundreds
 * of them piled up, a few MB of a sidecar's memory.
 */
const spareReadBuffers: Buffer[] = [];
const MAX_SPARE_READ_BUFFERS = 64;

export interface UpstreamEvents {
  /** The response ended and the connection may carry another request. */
  release(conn: UpstreamConnection): void;
  /** The connection is gone (closed, failed or not reusable). */
  gone(conn: UpstreamConnection): void;
  /**
   * The request never reached the upstream: connecting failed (`stale` false: reported
   * up the stack as refused), or a pooled connection turned out closed by the server as
   * it was reused, before it answered an idempotent body-less request (`stale` true:
   * the pool sends it again on a fresh connection).
   */
  unsent(ex: Picked, conn: UpstreamConnection, reason: string, stale: boolean): void;
  /** Code to answer with when the upstream resets mid-exchange. */
  readonly resetCode: ErrorCode;
  /** The upstream is the local app (inbound): an HTTP/2 answer is named as the app's protocol. */
  readonly toApp?: boolean;
}

/** How a connection to a peer is secured: TLS options and who watches its handshake, or why it can't be opened. */
export type SecureConnect = { readonly options: tls.ConnectionOptions; readonly watch: (socket: tls.TLSSocket, key: string) => void } | string;

export class UpstreamConnection implements AttemptLink {
  readonly socket: net.Socket;
  /** `host:port`: the pool's key, and the address errors name. */
  readonly key: string;
  readonly #events: UpstreamEvents;
  ready = false;
  /** Requests this connection has carried; > 1 means it was reused from the pool. */
  uses = 0;
  ex: Picked | undefined;
  /** When the current request was sent (performance.now()), for the response timeout. */
  sentAt = 0;
  /** How long a request on this connection waits for its response head by default (timeout.ts enforces it). */
  readonly headTimeoutMs: number;
  idleSince = 0;
  /** The circuit breaker counting this connection against its destination's maxConnections (pool.ts). */
  breaker: CircuitBreaker | undefined;

  #buf: Buffer | undefined;
  #scanFrom = 0;
  #inBody = false;
  #body: Body = Body.None;
  #remaining = 0;
  #framer: ChunkedFramer | undefined;
  #reusable = true;
  #closed = false;
  /** Each response's head, parsed into the same object (read only while its head is handled). */
  readonly #head = responseHeadSlot();
  /** Each response head's outcome, the same object refilled: the layers read it as it passes up and keep none (outcome.ts). */
  readonly #outcome: Mutable<HeadOutcome> = { kind: 'head', status: 0, grpcStatus: '', appUnavailable: false, sentAt: 0, edits: undefined };
  /**
   * Responses are read into this connection's own buffer (net's `onread`), reused read
   * after read, instead of a fresh 64 KiB allocation per read as a stream socket gets:
   * that allocation and its ArrayBuffer were about a tenth of a sidecar's CPU at max rate.
   * Bytes of it that outlive a read (a partial head kept, a write to the client that
   * did not go out at once) make it `#readTaken`, and the next read gets a new buffer.
   */
  #readBuf: Buffer | undefined;
  #readTaken = false;
  /** The tunnel's client after `101 Switching Protocols`: reads go straight to it. */
  #tunnelTo: ClientBytes | undefined;
  #tunnel: Tunnel | undefined;

  /**
   * `secure`: how this connection is secured (pool.ts, from the snapshot): undefined for
   * plaintext, TLS options for mutual TLS to a peer sidecar (ready once the handshake is
   * done), or the reason it can't be opened (mTLS wanted, no certificate yet).
   */
  constructor(host: string, port: number, key: string, events: UpstreamEvents, headTimeoutMs = 15_000, secure?: SecureConnect) {
    this.key = key;
    this.#events = events;
    this.headTimeoutMs = headTimeoutMs;
    const onread = { buffer: () => this.#nextReadBuffer(), callback: (n: number, buf: Uint8Array) => this.#onRead(n, buf as Buffer) };
    if (secure === undefined) this.socket = net.connect({ host, port, noDelay: true, onread });
    else if (typeof secure === 'string') {
      // Reported as any refused connect is (nothing was sent): the balance layer may try another endpoint.
      this.socket = new net.Socket();
      const s = this.socket;
      process.nextTick(() => s.destroy(new Error(secure)));
    } else {
      // tls.connect takes `onread` as net.connect does (node's docs), though its types don't say so.
      const t = tls.connect({ host, port, ...secure.options, onread } as tls.ConnectionOptions);
      t.setNoDelay(true);
      secure.watch(t, key);
      this.socket = t;
    }
    this.socket.on(secure === undefined ? 'connect' : 'secureConnect', () => {
      this.ready = true;
      if (this.ex) this.#sendQueued(this.ex);
    });
    this.socket.on('drain', () => this.ex?.client.resumeBody());
    this.socket.on('error', (err) => this.#onClose(err.message));
    this.socket.on('close', () => {
      this.#onClose('connection closed');
      // The handle is closed: nothing reads into the buffer any more. One that outlived
      // a read (queued for the client) stays with whoever holds it.
      const b = this.#readBuf;
      this.#readBuf = undefined;
      if (b !== undefined && !this.#readTaken && b.length === READ_BUFFER_BYTES && spareReadBuffers.length < MAX_SPARE_READ_BUFFERS) spareReadBuffers.push(b);
    });
  }

  #nextReadBuffer(): Buffer {
    const b = this.#readBuf;
    if (b !== undefined && !this.#readTaken) return b;
    this.#readTaken = false;
    // After the first buffer, the largest: this one was taken, or a read filled it.
    if (b === undefined) return (this.#readBuf = spareReadBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES));
    return (this.#readBuf = Buffer.allocUnsafeSlow(MAX_READ_BUFFER_BYTES));
  }

  /** Always true (keep reading): backpressure pauses the socket explicitly. */
  #onRead(n: number, buf: Buffer): boolean {
    if (n === buf.length && n < MAX_READ_BUFFER_BYTES) this.#readTaken = true; // grow: see #nextReadBuffer
    const chunk = buf.subarray(0, n);
    const tunnel = this.#tunnelTo;
    const ex = this.ex; // before the read: the exchange may end (and be let go) within it
    try {
      if (tunnel !== undefined) {
        this.#tunnel!.received += n;
        this.#toClient(tunnel, chunk);
      } else this.#onData(chunk);
    } catch (err) {
      // An exception in relaying a response (its exchange ending runs the layers' callbacks)
      // ends this connection and the exchange's client, which reports it; never the process.
      if (this.ex === ex) this.ex = undefined;
      if (ex !== undefined && ex.link === this) ex.link = undefined;
      this.close();
      if (ex?.client.failed !== undefined) ex.client.failed(err);
      else (ex?.client.socket ?? tunnel)?.destroy();
    }
    return true;
  }

  /** Writes bytes read from the upstream to the client, pausing the upstream while the client is backed up. */
  #toClient(client: ClientBytes, data: Buffer): void {
    const drained = client.write(data);
    // Not written through at once: the client's queue may hold `data`, a view of the read buffer.
    if (holdsLastWrite(client)) this.#readTaken = true;
    if (!drained) {
      this.socket.pause();
      client.once('drain', () => this.socket.resume());
    }
  }

  /** Starts an exchange on this connection. */
  send(ex: Picked): void {
    this.ex = ex;
    this.uses++;
    this.#reusable = true;
    this.sentAt = 0;
    ex.link = this;
    if (this.ready) this.#sendQueued(ex);
  }

  /** Request body bytes, once connected (Exchange.writeBody queues them before). */
  write(chunk: Buffer): boolean {
    return this.socket.write(chunk);
  }

  /** The layers gave this attempt up (a timeout): the connection goes, its response unread; nothing is reported. */
  cancel(): void {
    const ex = this.ex;
    if (ex !== undefined) this.#drop(ex);
    else this.close();
  }

  #sendQueued(ex: Picked): void {
    const s = this.socket;
    const req = ex.req;
    this.sentAt = performance.now();
    // One buffer, one write: a single write() is markedly cheaper in Node than a corked writev.
    let head: Buffer;
    // An Upgrade goes upstream only as the upgrade layer permitted it (ex.upgradeTo);
    // any request that carries one is rewritten (req.rewrite), so none passes raw.
    if (ex.headEdits !== undefined) {
      head = Buffer.from(ex.headEdits.serialize(req, ex.extraHead, ex.upgradeTo), 'latin1');
    } else if (req.rewrite) {
      head = Buffer.from(serializeRequestHead(req, ex.extraHead, ex.upgradeTo), 'latin1');
    } else if (ex.extraHead) {
      const raw = ex.head;
      head = Buffer.allocUnsafe(raw.length + ex.extraHead.length);
      // The whole raw head (set, not copy: Buffer#copy of a part makes a view of it to copy
      // from), its blank line then written over by the extra lines.
      head.set(raw, 0);
      head.write(ex.extraHead, raw.length - 2, 'latin1');
      head[head.length - 2] = 13;
      head[head.length - 1] = 10;
    } else {
      head = ex.head;
    }
    const queue = ex.bodyQueue;
    if (queue === undefined) {
      s.write(head);
    } else {
      ex.bodyQueue = undefined;
      s.cork();
      s.write(head);
      for (const chunk of queue) s.write(chunk);
      s.uncork();
    }
    if (!ex.requestBodyDone) ex.client.resumeBody();
  }

  #onData(chunk: Buffer): void {
    const ex = this.ex;
    if (ex === undefined) {
      // Bytes from an idle upstream: it is not speaking HTTP/1.1 as we are; drop it.
      this.#reusable = false;
      this.socket.destroy();
      return;
    }
    if (this.#inBody) {
      this.#forwardBody(ex, chunk, 0);
      return;
    }
    const buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    this.#readHead(ex, buf);
  }

  #readHead(ex: Picked, buf: Buffer): void {
    for (;;) {
      let end = findHeadEnd(buf, this.#scanFrom, buf.length);
      if (end === -1) {
        // Not the start of a status line: an HTTP/2-only server (a gRPC app) answers
        // HTTP/1.1 with its SETTINGS frame and a GOAWAY, never a blank line to wait for.
        if (buf[0] !== 0x48 /* H */ && buf[0] !== 0x68 /* h */ && buf.length >= 9) return this.#notHttp1(ex, buf);
        if (buf.length > MAX_HEAD_BYTES) return this.#protocolError(ex, 'response head too large');
        this.#buf = buf;
        this.#readTaken = true; // `buf` may be a view of the read buffer
        this.#scanFrom = buf.length - 3;
        return;
      }
      this.#buf = undefined;
      this.#scanFrom = 0;
      const head = parseResponseHead(buf, end, this.#head);
      if (isFailure(head)) return this.#protocolError(ex, head.reason);
      const client = ex.client.socket;
      if (head.status < 200 && head.status !== 101) {
        // 100 Continue and friends: pass on (never to an HTTP/1.0 client, RFC 9110 §15.2), then read the final response.
        if (ex.req.minor === 1) this.#toClient(client, buf.subarray(0, end));
        if (end === buf.length) return;
        buf = buf.subarray(end);
        continue;
      }
      let switched: string | undefined;
      if (head.status === 101) {
        // A tunnel only to a protocol the request offered, as the upgrade layer permitted
        // it: a 101 to anything else would let the client's next bytes skip routing.
        switched = switchedTo(ex.upgradeTo, head.upgrade);
        if (switched === undefined) {
          return this.#protocolError(
            ex,
            ex.upgradeTo === ''
              ? '101 Switching Protocols to a request that asked for no upgrade'
              : '101 Switching Protocols to a protocol the request did not offer',
          );
        }
      }
      // Up the stack before a byte reaches the client: a layer may take it (a retry, or
      // another endpoint for a peer whose app is down), and then neither this response
      // nor this connection (its body unread) is used.
      const outcome = this.#outcome;
      outcome.status = head.status;
      outcome.appUnavailable = head.appUnavailable;
      outcome.sentAt = this.sentAt;
      outcome.edits = undefined;
      if (!ex.report(outcome)) {
        this.#drop(ex);
        return;
      }
      ex.status = head.status;
      ex.responseStarted = true;
      if (switched !== undefined) return this.#openTunnel(ex, buf, end, switched);
      if (head.close) this.#reusable = false;
      const method = ex.req.method;
      if (method === 'HEAD' || head.status === 204 || head.status === 304) this.#body = Body.None;
      else if (head.chunked) {
        this.#body = Body.Chunked;
        this.#framer = new ChunkedFramer();
      } else if (head.contentLength >= 0) {
        this.#body = Body.Length;
        this.#remaining = head.contentLength;
      } else {
        this.#body = Body.UntilClose;
        this.#reusable = false;
      }
      if (outcome.edits !== undefined) ({ buf, end } = editResponseHead(buf, end, outcome.edits));
      if (!ex.requestBodyDone && !head.close) {
        // An answer before the whole request body arrived (an early 413, or a server
        // that does not read bodies): this client connection closes after it, so say
        // so, or a proxy in front would pool a connection that is about to close.
        ex.closeAfter = true;
        const close = Buffer.from('connection: close\r\n\r\n', 'latin1');
        buf = Buffer.concat([buf.subarray(0, end - 2), close, buf.subarray(end)]);
        end += close.length - 2;
      }

      if (this.#body === Body.None || (this.#body === Body.Length && this.#remaining === 0)) {
        ex.responseBytes += end;
        if (end < buf.length) this.#reusable = false; // bytes beyond a complete response
        this.#write(ex, end === buf.length ? buf : buf.subarray(0, end));
        this.#complete(ex);
        return;
      }
      // Send the head and whatever of the body came with it in one write.
      this.#inBody = true;
      this.#forwardBody(ex, buf, end);
      return;
    }
  }

  /** Forwards `chunk[from..]` of the response body (and, when from > 0, the head before it). */
  #forwardBody(ex: Picked, chunk: Buffer, from: number): void {
    let end: number;
    switch (this.#body) {
      case Body.Length: {
        const n = Math.min(this.#remaining, chunk.length - from);
        this.#remaining -= n;
        end = this.#remaining === 0 ? from + n : -1;
        break;
      }
      case Body.Chunked:
        end = this.#framer!.feed(chunk, from, chunk.length);
        if (this.#framer!.error) {
          // Bad framing in the read that brought the head: nothing reached the client
          // yet, so it can still get a 502 rather than a reset.
          if (from > 0) ex.responseStarted = false;
          return this.#protocolError(ex, this.#framer!.error);
        }
        break;
      default:
        end = -1;
    }
    const upTo = end === -1 ? chunk.length : end;
    if (end !== -1 && end < chunk.length) this.#reusable = false;
    ex.responseBytes += upTo;
    this.#write(ex, upTo === chunk.length ? chunk : chunk.subarray(0, upTo));
    if (end !== -1) this.#complete(ex);
  }

  #write(ex: Picked, data: Buffer): void {
    const client = ex.client.socket;
    if (client.destroyed) {
      // The client is gone: nothing more of this response is wanted, nor this connection's state.
      this.#reusable = false;
      return;
    }
    this.#toClient(client, data);
  }

  #complete(ex: Picked): void {
    this.#inBody = false;
    this.#framer = undefined;
    this.ex = undefined;
    ex.link = undefined;
    // A response that ends before its request body was fully sent leaves the upstream
    // mid-request; the connection can't be reused.
    // A connection paused for a slow client is not handed to another exchange.
    const reusable = this.#reusable && ex.requestBodyDone && !this.#closed && !this.socket.isPaused();
    if (reusable) {
      this.idleSince = performance.now();
      this.#events.release(this);
    } else {
      this.close();
    }
    ex.finish(ex.req.keepAlive && this.#body !== Body.UntilClose && ex.requestBodyDone && !ex.closeAfter);
  }

  /**
   * After `101 Switching Protocols` the connection is a byte tunnel to the client.
   * `buf` holds the 101's head (`[0, end)`) and any tunnel bytes after it. Its bytes
   * each way are counted, and telemetry hears when it opens (the exchange's observer)
   * and when it closes (`tunnel.onClose`).
   */
  #openTunnel(ex: Picked, buf: Buffer, end: number, protocol: string): void {
    const client = ex.client.socket;
    const tunnel: Tunnel = { protocol, openedAt: performance.now(), sent: 0, received: buf.length - end, onClose: undefined };
    ex.tunnel = tunnel;
    this.#tunnel = tunnel;
    this.#reusable = false;
    this.ex = undefined;
    this.#events.gone(this);
    this.socket.removeAllListeners('drain');
    // Upstream → client: this connection's reads go straight to the client (#onRead), as
    // a pipe would; client → upstream is a pipe.
    this.#tunnelTo = client;
    this.#toClient(client, buf);
    this.socket.on('end', () => client.end());
    const early = ex.client.detach();
    if (early !== undefined) {
      tunnel.sent += early.length;
      this.socket.write(early);
    }
    client.on('data', (c: Buffer) => {
      tunnel.sent += c.length;
    });
    client.pipe(this.socket);
    client.resume();
    let closed = false;
    const ended = (): void => {
      if (closed) return;
      closed = true;
      tunnel.onClose?.(tunnel);
    };
    this.socket.on('close', () => {
      client.destroy();
      ended();
    });
    client.on('close', () => {
      this.socket.destroy();
      ended();
    });
    // The exchange is over as HTTP: the layers settle (telemetry counts the tunnel open).
    ex.link = undefined;
    ex.finished = true;
    ex.report(END);
    // A client gone before the listeners above: its close has fired already.
    if (client.destroyed) this.socket.destroy();
  }

  #protocolError(ex: Picked, reason: string, code: ErrorCode = 'TRELLIS_E_UPSTREAM_PROTOCOL', params: Record<string, unknown> = {}): void {
    this.#drop(ex);
    ex.report({ kind: 'broken', code, params: { address: this.key, reason, ...params }, sentAt: this.sentAt });
  }

  /** A response that is not HTTP/1.x; from the local app in HTTP/2, the error names that cause (app-version.ts). */
  #notHttp1(ex: Picked, buf: Buffer): void {
    if (!isServerPreface(buf)) return this.#protocolError(ex, 'the response does not start with an HTTP/1.x status line');
    if (this.#events.toApp === true) return this.#protocolError(ex, H1_REQUEST_TO_H2_APP, 'TRELLIS_E_APP_PROTOCOL', { speaks: SPEAKS_H2 });
    this.#protocolError(ex, 'it answered in HTTP/2 (a SETTINGS frame), not HTTP/1.1');
  }

  /** Lets the exchange go and closes the connection, its response (if any) unread. */
  #drop(ex: Picked): void {
    this.#reusable = false;
    this.ex = undefined;
    if (ex.link === this) ex.link = undefined;
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#events.gone(this);
    this.socket.destroy();
  }

  #onClose(reason: string): void {
    const wasClosed = this.#closed;
    this.#closed = true;
    if (!wasClosed) this.#events.gone(this);
    const ex = this.ex;
    if (ex === undefined) return;
    this.ex = undefined;
    if (ex.link === this) ex.link = undefined;
    if (ex.finished) return; // the client went away first
    if (this.ready && this.uses > 1 && !ex.responseStarted && this.#buf === undefined && ex.bodyless && IDEMPOTENT.has(ex.req.method)) {
      // Stale pooled connection: the same endpoint gets the request on a fresh one, the attempt goes on.
      // Idempotent methods only: a proxy must not replay others on its own (RFC 9112 9.3.1.1).
      this.#events.unsent(ex, this, reason, true);
      return;
    }
    if (!this.ready) {
      this.#events.unsent(ex, this, reason, false);
    } else if (this.#inBody && this.#body === Body.UntilClose) {
      // The close is this response's end.
      this.#inBody = false;
      ex.finish(false);
      ex.client.socket.end();
    } else if (ex.responseStarted) {
      // Cut off mid-response: the client's connection is reset (Exchange.fail).
      ex.fail(this.#events.resetCode, { address: this.key });
    } else {
      ex.report({ kind: 'reset', code: this.#events.resetCode, params: { address: this.key, reason }, sentAt: this.sentAt, partial: this.#buf !== undefined });
    }
  }
}
