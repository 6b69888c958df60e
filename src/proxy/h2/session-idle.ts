// Closes an HTTP/2 session that has had no open stream for a while, on either side of
// the proxy: a client's session to a listener (limits.idleTimeoutMs) and the proxy's
// pooled session to an endpoint (PEER_IDLE_TIMEOUT_MS). node's session.setTimeout()
// counts frames, not streams: it would close a session whose one long gRPC stream is
// quiet, and keeps one open that a client pings. Idle here means no stream open.
//
// One timer per session, re-armed when it fires rather than on every stream, so a busy
// session costs a counter per stream and nothing on a clock.
import type http2 from 'node:http2';

export class SessionIdle {
  readonly #session: http2.Http2Session;
  readonly #ms: number;
  #open = 0;
  /** performance.now() when the last open stream closed (or the session began). */
  #since = performance.now();
  #timer: NodeJS.Timeout | undefined;
  /** Set once close() was called: the next expiry destroys a session that did not finish closing. */
  #closing = false;

  constructor(session: http2.Http2Session, ms: number) {
    this.#session = session;
    this.#ms = ms;
    if (!(ms > 0 && Number.isFinite(ms))) return; // 0 (or Infinity): no idle timeout
    this.#arm(ms);
    session.once('close', () => clearTimeout(this.#timer));
  }

  /** Counts `stream` open until its 'close'. */
  streamOpened(stream: http2.Http2Stream): void {
    this.#open++;
    stream.once('close', this.#streamClosed);
  }

  readonly #streamClosed = (): void => {
    if (--this.#open === 0) this.#since = performance.now();
  };

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#expire, ms);
    this.#timer.unref();
  }

  readonly #expire = (): void => {
    const s = this.#session;
    if (s.destroyed) return;
    if (this.#closing) {
      // GOAWAY went out one period ago and the session is still here (a client that
      // reads nothing): the socket goes.
      s.destroy();
      return;
    }
    if (this.#open > 0) return this.#arm(this.#ms);
    const left = this.#ms - (performance.now() - this.#since);
    if (left > 0) return this.#arm(left);
    // GOAWAY (NO_ERROR), then the socket closes: no stream is open to wait for.
    this.#closing = true;
    s.close();
    if (!s.destroyed) this.#arm(this.#ms);
  };
}
