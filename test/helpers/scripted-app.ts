// Test helper: an app (HTTP/1.1 and h2c on one port) whose answers a test scripts by
// path prefix, and which records every request it saw. Behaviour tests assert on what
// the app saw (how many attempts, which method, headers and body) as well as on what the
// client got, the same way whichever protocol reached the app.
import type http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { listenH1AndH2 } from './h2.js';

/**
 * One answer: a status (the body says which app answered), a full response,
 * `reset` (the app drops the request: its connection on HTTP/1.1, its stream on HTTP/2),
 * `die` (the connection goes down with an RST, as when a process is killed), `hang`
 * (never answers) or `hold` (answers 200 when the test calls {@link ScriptedApp.release}).
 */
export type Answer = number | { status: number; body?: string; headers?: Record<string, string> } | 'reset' | 'die' | 'hang' | 'hold';

/** A request as the app saw it. */
export interface Seen {
  readonly app: string;
  /** '1.1' or '2.0'. */
  readonly version: string;
  readonly method: string;
  /** The request target (path and query). */
  readonly url: string;
  /** The authority: Host on HTTP/1.1, :authority on HTTP/2. */
  readonly host: string;
  /** Header values as node gives them (repeated fields joined with ', '). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

type Res = http.ServerResponse | http2.Http2ServerResponse;
type Req = http.IncomingMessage | http2.Http2ServerRequest;

export class ScriptedApp {
  readonly name: string;
  port = 0;
  /** Every request that reached the app, in order of arrival (of its whole body). */
  readonly seen: Seen[] = [];
  /** Requests whose response was closed before the app answered (the proxy gave up on them). */
  abandoned = 0;
  /** The RST_STREAM code of each abandoned HTTP/2 request, in order. */
  readonly abandonedCodes: number[] = [];
  readonly #scripts = new Map<string, { answers: Answer[]; next: number }>();
  readonly #held: Res[] = [];
  readonly #open = new Set<Res>();
  #server: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();

  constructor(name: string) {
    this.name = name;
  }

  async listen(): Promise<this> {
    const a = await listenH1AndH2((req, res) => this.#handle(req, res));
    this.#server = a.server;
    this.port = a.port;
    // Every connection, whichever protocol it turned out to be (or none yet), so close() ends them all.
    a.server.on('connection', (s: net.Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    return this;
  }

  /**
   * Requests whose path starts with `prefix` (the longest scripted prefix wins) get
   * `answers` in turn, the last one again once the list is used up.
   */
  script(prefix: string, answers: Answer[]): void {
    this.#scripts.set(prefix, { answers, next: 0 });
  }

  /** The requests seen whose path starts with `prefix`. */
  saw(prefix: string): Seen[] {
    return this.seen.filter((s) => s.url.startsWith(prefix));
  }

  /** How many requests are being held. */
  get holding(): number {
    return this.#held.length;
  }

  /** Answers every held request 200. */
  release(): void {
    for (const res of this.#held.splice(0)) if (!res.writableEnded && !res.destroyed) res.end(`${this.name} released`);
  }

  async close(): Promise<void> {
    this.release();
    for (const res of this.#open) res.destroy();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }

  #answerFor(path: string): Answer {
    let best: string | undefined;
    for (const p of this.#scripts.keys()) if (path.startsWith(p) && (best === undefined || p.length > best.length)) best = p;
    if (best === undefined) return 200;
    const s = this.#scripts.get(best)!;
    const a = s.answers[Math.min(s.next, s.answers.length - 1)]!;
    s.next++;
    return a;
  }

  #handle(req: Req, res: Res): void {
    if (req.httpVersion === '2.0') (req as http2.Http2ServerRequest).stream.on('error', () => {});
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (k.startsWith(':') || v === undefined) continue;
        headers[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      const url = req.url ?? '';
      const host = String(req.headers.host ?? req.headers[':authority'] ?? '');
      this.seen.push({ app: this.name, version: req.httpVersion, method: req.method ?? '', url, host, headers, body: Buffer.concat(chunks).toString() });
      this.#answer(req, res, this.#answerFor(url.split('?')[0]!));
    });
  }

  #answer(req: Req, res: Res, a: Answer): void {
    if (a === 'reset' || a === 'die') {
      if (req.httpVersion === '2.0') {
        const stream = (req as http2.Http2ServerRequest).stream;
        if (a === 'reset') stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else (stream.session?.socket as net.Socket | undefined)?.resetAndDestroy();
      } else {
        const socket = req.socket as net.Socket;
        if (a === 'reset') socket.destroy();
        else socket.resetAndDestroy();
      }
      return;
    }
    this.#open.add(res);
    res.on('close', () => {
      this.#open.delete(res);
      if (res.writableEnded) return;
      this.abandoned++;
      if (req.httpVersion === '2.0') this.abandonedCodes.push((req as http2.Http2ServerRequest).stream.rstCode ?? 0);
    });
    if (a === 'hang') return;
    if (a === 'hold') return void this.#held.push(res);
    const { status, body, headers } = typeof a === 'number' ? { status: a, body: undefined, headers: undefined } : a;
    res.statusCode = status;
    res.setHeader('x-app', this.name);
    for (const [k, v] of Object.entries(headers ?? {})) res.setHeader(k, v);
    res.end(body ?? `${this.name} ${status}`);
  }
}

/** A {@link ScriptedApp} listening on 127.0.0.1, port 0. */
export function scriptedApp(name: string): Promise<ScriptedApp> {
  return new ScriptedApp(name).listen();
}
