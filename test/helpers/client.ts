// Test helper: one client shape over HTTP/1.1 and HTTP/2 (h2c with prior knowledge), so
// a behaviour case is written once and run over both wire protocols. A reply is the
// status, the headers (no pseudo-headers), the body as text, and the trailers.
import http from 'node:http';
import http2 from 'node:http2';

export type WireProtocol = 'HTTP/1.1' | 'HTTP/2';
export const WIRE_PROTOCOLS: readonly WireProtocol[] = ['HTTP/1.1', 'HTTP/2'];

export type ReplyHeaders = Record<string, string | string[] | undefined>;

export interface Reply {
  readonly status: number;
  readonly headers: ReplyHeaders;
  readonly body: string;
  readonly trailers: ReplyHeaders;
  /** The `trellis-error` token of a response the proxy made, '' for none. */
  readonly error: string;
}

export interface TestClient {
  readonly protocol: WireProtocol;
  /**
   * One request. `headers.host` is the request's authority (`:authority` on HTTP/2). A
   * `body` is sent as it is sent by default on each protocol: with a content-length on
   * HTTP/1.1, and with none (the stream's end ends it) on HTTP/2.
   */
  request(method: string, path: string, headers?: Record<string, string>, body?: string): Promise<Reply>;
  /** Closes the client's connections, ending any request still open on them. */
  close(): Promise<void>;
}

function errorOf(headers: ReplyHeaders): string {
  const v = headers['trellis-error'];
  return typeof v === 'string' ? v : '';
}

class Http1Client implements TestClient {
  readonly protocol = 'HTTP/1.1' as const;
  readonly #port: number;
  // Keep-alive, so sequential requests share a connection as a real client's do.
  readonly #agent = new http.Agent({ keepAlive: true });

  constructor(port: number) {
    this.#port = port;
  }

  request(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: this.#port, method, path, headers, agent: this.#agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text, trailers: res.trailers, error: errorOf(res.headers) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}

class Http2Client implements TestClient {
  readonly protocol = 'HTTP/2' as const;
  readonly #port: number;
  #session: http2.ClientHttp2Session | undefined;

  constructor(port: number) {
    this.#port = port;
  }

  /** The client's one session, opened again if the proxy closed it (as a browser's would be). */
  #live(): http2.ClientHttp2Session {
    if (this.#session === undefined || this.#session.closed || this.#session.destroyed) {
      this.#session = http2.connect(`http://127.0.0.1:${this.#port}`);
      this.#session.on('error', () => {});
    }
    return this.#session;
  }

  request(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
    const { host, ...rest } = headers;
    const head: http2.OutgoingHttpHeaders = { ':method': method, ':path': path, ...rest };
    if (host !== undefined) head[':authority'] = host;
    return new Promise((resolve, reject) => {
      const stream = this.#live().request(head, { endStream: body === undefined });
      let status = 0;
      let resHeaders: ReplyHeaders = {};
      let trailers: ReplyHeaders = {};
      let text = '';
      stream.on('response', (h) => {
        status = Number(h[':status']);
        resHeaders = withoutPseudo(h);
      });
      stream.on('trailers', (t) => {
        trailers = withoutPseudo(t);
      });
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        text += c;
      });
      stream.on('end', () => resolve({ status, headers: resHeaders, body: text, trailers, error: errorOf(resHeaders) }));
      stream.on('error', reject);
      if (body !== undefined) stream.end(body);
    });
  }

  async close(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    // Destroyed, not closed: a close would wait for streams a failed case left open.
    s?.destroy();
  }
}

function withoutPseudo(h: http2.IncomingHttpHeaders): ReplyHeaders {
  const out: ReplyHeaders = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v;
  return out;
}

/** A client of the listener at 127.0.0.1:`port` speaking `protocol`. */
export function openClient(protocol: WireProtocol, port: number): TestClient {
  return protocol === 'HTTP/2' ? new Http2Client(port) : new Http1Client(port);
}
