// HTTP/2 transport for load runs: one prior-knowledge h2c session (node:http2) and up
// to N streams in flight on it. A session that closes fails its streams ("reset") and
// is reopened with a backoff, as an HTTP/1.1 connection would be.
import http2 from 'node:http2';
import type { LoopbackTarget, RequestSpec } from './target.js';
import type { Transport, TransportEvents } from './transport.js';

/** Headers HTTP/2 forbids (connection-specific); the session handles what they did. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

const MAX_BACKOFF_MS = 1000;
const { NGHTTP2_CANCEL, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

export class Http2Transport implements Transport {
  readonly #target: LoopbackTarget;
  readonly #headers: http2.OutgoingHttpHeaders;
  readonly #body: Buffer;
  readonly #maxStreams: number;
  readonly #timeoutMs: number;
  readonly #events: TransportEvents;
  readonly #streams = new Map<number, http2.ClientHttp2Stream>();
  #session: http2.ClientHttp2Session | undefined;
  #open = false;
  #failures = 0;
  /** Responses on the current session (one that dies before any is not a success). */
  #served = 0;
  #lastFailure: 'connect' | 'reset' | 'protocol' = 'connect';
  #closed = false;

  constructor(target: LoopbackTarget, spec: RequestSpec, maxStreams: number, timeoutMs: number, events: TransportEvents) {
    this.#target = target;
    const host = spec.headers.find(([n]) => n.toLowerCase() === 'host')?.[1];
    const headers: http2.OutgoingHttpHeaders = {
      ':method': spec.method,
      ':path': target.path,
      ':scheme': 'http',
      ':authority': host ?? target.authority,
    };
    for (const [name, value] of spec.headers) {
      const lower = name.toLowerCase();
      if (CONNECTION_HEADERS.has(lower)) continue;
      const prev = headers[lower];
      headers[lower] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [String(prev)]), value];
    }
    if (spec.body.length > 0) headers['content-length'] = String(spec.body.length);
    this.#headers = headers;
    this.#body = spec.body;
    this.#maxStreams = maxStreams;
    this.#timeoutMs = timeoutMs;
    this.#events = events;
  }

  async open(): Promise<void> {
    await Promise.race([this.#connect(), new Promise((r) => setTimeout(r, this.#timeoutMs).unref())]);
  }

  get unavailable(): 'connect' | 'reset' | 'protocol' | undefined {
    return !this.#open && this.#failures > 0 ? this.#lastFailure : undefined;
  }

  trySend(i: number): boolean {
    const session = this.#session;
    if (!this.#open || !session || session.closed || session.destroyed || this.#streams.size >= this.#maxStreams) return false;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(this.#headers, { endStream: this.#body.length === 0 });
    } catch {
      return false; // the session is going away; the request waits for the next one
    }
    this.#streams.set(i, stream);
    let status = 0;
    let settled = false;
    const settle = (report: () => void): void => {
      if (settled) return;
      settled = true;
      if (this.#streams.get(i) === stream) {
        this.#streams.delete(i);
        report();
        if (!this.#closed) this.#events.ready();
      }
    };
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.on('end', () =>
      settle(() => {
        this.#served++;
        this.#events.response(i, status);
      }),
    );
    let protocolError = false;
    stream.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'ERR_HTTP2_ERROR') protocolError = true; // e.g. the peer does not speak HTTP/2
    });
    stream.on('close', () => {
      if (status > 0 && stream.rstCode === NGHTTP2_NO_ERROR && stream.readableEnded) {
        settle(() => {
          this.#served++;
          this.#events.response(i, status);
        });
      } else {
        settle(() => this.#events.failure(i, protocolError || stream.rstCode === NGHTTP2_PROTOCOL_ERROR ? 'protocol' : 'reset'));
      }
    });
    stream.resume();
    if (this.#body.length > 0) stream.end(this.#body);
    return true;
  }

  cancel(i: number): void {
    const stream = this.#streams.get(i);
    if (!stream) return;
    this.#streams.delete(i);
    stream.close(NGHTTP2_CANCEL);
  }

  close(): void {
    this.#closed = true;
    this.#streams.clear();
    this.#session?.destroy();
  }

  #connect(): Promise<void> {
    return new Promise((resolve) => {
      const host = this.#target.host.includes(':') ? `[${this.#target.host}]` : this.#target.host;
      const session = http2.connect(`http://${host}:${this.#target.port}`, {
        // Big windows, so a large response is not paced by WINDOW_UPDATE round trips.
        settings: { initialWindowSize: 4 * 1024 * 1024, enablePush: false },
      });
      this.#session = session;
      let connected = false;
      let protocolError = false;
      this.#served = 0;
      session.once('connect', () => {
        connected = true;
        this.#open = true;
        try {
          session.setLocalWindowSize(16 * 1024 * 1024);
        } catch {
          /* an older peer: the default window works, only slower */
        }
        resolve();
        if (!this.#closed) this.#events.ready();
      });
      session.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'ERR_HTTP2_ERROR') protocolError = true;
      });
      session.once('goaway', () => {
        this.#open = false; // no new streams on it; those in flight finish or fail
      });
      session.once('close', () => {
        if (this.#session !== session) return;
        this.#open = false;
        this.#session = undefined;
        resolve();
        // Streams still open on a dead session are lost (there is one session at a time,
        // so every stream in the map was on this one).
        for (const i of [...this.#streams.keys()]) {
          this.#streams.delete(i);
          this.#events.failure(i, protocolError ? 'protocol' : 'reset');
        }
        // A refused connect, or a session that died before answering anything, backs off.
        this.#failures = connected && this.#served > 0 ? 0 : this.#failures + 1;
        if (this.#failures > 0) this.#lastFailure = !connected ? 'connect' : protocolError ? 'protocol' : 'reset';
        if (this.#closed) return;
        const delay = this.#failures === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 10 * 2 ** (this.#failures - 1));
        setTimeout(() => {
          if (!this.#closed) void this.#connect();
        }, delay).unref();
      });
    });
  }
}
