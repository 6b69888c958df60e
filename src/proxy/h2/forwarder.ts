// The terminal layer for HTTP/2 exchanges: each request goes to the next hop as an
// HTTP/2 stream over one pooled h2c session per endpoint (multiplexed), the bodies
// piped both ways (HTTP/2 flow control is the backpressure), trailers passed through
// both ways (gRPC's status is a trailer), and a reset on either side reset on the other.
//
// A stream is only opened once its session is connected, so a refused connection has
// read nothing from the client, and is reported up the stack as such (the balance
// layer tries another endpoint), as the HTTP/1.1 forwarder does. A session that sends
// GOAWAY takes no new streams; its streams in flight finish. What becomes of each
// stream goes up the stack as an outcome (stack/outcome.ts): retries, timeouts and
// the attempt's bookkeeping are the layers', not this codec's.
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { SecureFor } from '../http1/pool.js';
import type { ErrorCode } from '../../errors.js';
import type { AttemptLink, Exchange, Handler } from '../stack/exchange.js';
import { editLines, type HeaderModifier } from '../filters/header-modifier.js';
import type { H2ServerStream } from './server-stream.js';
import { connectionKey, endpointKey } from '../balancer/balancer.js';
import { PEER_IDLE_TIMEOUT_MS } from '../http1/pool.js';
import { SessionIdle } from './session-idle.js';
import { addField } from './header-fields.js';
import type { Picked } from '../stack/decisions.js';
import type { HeadOutcome } from '../stack/outcome.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** Request headers no HTTP/2 hop may forward (RFC 9113 §8.2.2), besides pseudo-headers. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

interface SessionEntry {
  readonly session: http2.ClientHttp2Session;
  /** Closes the session once it has had no open stream for the pool's idle timeout. */
  readonly idle: SessionIdle;
  connected: boolean;
  /** Why connecting failed, once it has. */
  failure: string | undefined;
  readonly waiting: ((failure: string | undefined) => void)[];
}

/** One h2c session per endpoint address, opened on first use and dropped when it closes or goes away. */
export class H2SessionPool {
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #idleTimeoutMs: number;
  readonly #secureFor: SecureFor | undefined;

  /**
   * `idleTimeoutMs`: a session with no open stream for this long is closed (as pooled
   * HTTP/1.1 connections to peers are). `secureFor`: which endpoints take mutual TLS (ALPN h2).
   */
  constructor(o: { idleTimeoutMs?: number; secureFor?: SecureFor } = {}) {
    this.#idleTimeoutMs = o.idleTimeoutMs ?? PEER_IDLE_TIMEOUT_MS;
    this.#secureFor = o.secureFor;
  }

  /** The session to the endpoint; `ready` runs once it is connected, or with the reason it could not connect. */
  session(to: { host: string; port: number; external?: string }, ready: (entry: SessionEntry, failure: string | undefined) => void): void {
    const key = connectionKey(to);
    let entry = this.#sessions.get(key);
    if (entry !== undefined && (entry.session.closed || entry.session.destroyed)) {
      this.#sessions.delete(key);
      entry = undefined;
    }
    if (entry === undefined) entry = this.#open(key, to.host, to.port);
    const e = entry;
    if (e.connected) ready(e, undefined);
    else if (e.failure !== undefined) ready(e, e.failure);
    else e.waiting.push((failure) => ready(e, failure));
  }

  #open(key: string, host: string, port: number): SessionEntry {
    const secure = this.#secureFor?.(key, 'h2');
    const session = http2.connect(`${secure === undefined ? 'http' : 'https'}://${host}:${port}`, {
      settings: { initialWindowSize: 1024 * 1024 },
      // Small frames (HEADERS, WINDOW_UPDATE) must not wait for Nagle.
      createConnection: () => {
        if (secure === undefined) return net.connect({ host, port, noDelay: true });
        if (typeof secure === 'string') {
          const s = new net.Socket();
          process.nextTick(() => s.destroy(new Error(secure)));
          return s;
        }
        const t = tls.connect({ host, port, ...secure.options });
        t.setNoDelay(true);
        secure.watch(t, key);
        return t;
      },
    });
    const entry: SessionEntry = { session, idle: new SessionIdle(session, this.#idleTimeoutMs), connected: false, failure: undefined, waiting: [] };
    this.#sessions.set(key, entry);
    const drop = (): void => {
      if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
    };
    const settle = (failure: string | undefined): void => {
      const waiting = entry.waiting.splice(0);
      for (const w of waiting) w(failure);
    };
    session.once('connect', () => {
      entry.connected = true;
      session.setLocalWindowSize(8 * 1024 * 1024);
      settle(undefined);
    });
    session.on('error', (err: Error) => {
      drop();
      if (!entry.connected && entry.failure === undefined) {
        entry.failure = err.message;
        settle(err.message);
      }
    });
    session.on('goaway', drop);
    session.on('close', () => {
      drop();
      if (!entry.connected && entry.failure === undefined) {
        entry.failure = 'connection closed';
        settle(entry.failure);
      }
    });
    return entry;
  }

  /** Closes the session to `key` (its security changed); its streams in flight finish. */
  closeOne(key: string): void {
    const e = this.#sessions.get(key);
    if (e === undefined) return;
    this.#sessions.delete(key);
    e.session.close();
  }

  /** Closes sessions to addresses no longer in use (their streams in flight finish). */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const [key, e] of this.#sessions) {
      if (keys.has(key)) continue;
      this.#sessions.delete(key);
      e.session.close();
    }
  }

  close(): void {
    for (const e of this.#sessions.values()) e.session.destroy();
    this.#sessions.clear();
  }
}

/** The request headers for the next hop: the client's, after route filters, plus `ex.extraHead`. */
function requestHeaders(ex: Exchange, client: H2ServerStream, authority: string): http2.OutgoingHttpHeaders {
  const edits = ex.headEdits;
  const lines = edits === undefined ? ex.req.lines : edits.lines;
  const headers: http2.OutgoingHttpHeaders = {
    ':method': ex.req.method,
    ':scheme': 'http',
    ':path': edits === undefined ? ex.req.target : edits.target,
    ':authority': authority,
  };
  addLines(headers, lines);
  if (ex.extraHead) addLines(headers, ex.extraHead.split('\r\n'));
  if (client.grpc) headers.te = 'trailers';
  return headers;
}

function addLines(headers: http2.OutgoingHttpHeaders, lines: readonly string[]): void {
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'host') {
      headers[':authority'] = value; // a URLRewrite hostname
      continue;
    }
    if (CONNECTION_SPECIFIC.has(name) || name === 'te') continue;
    addField(headers, name, value);
  }
}

/**
 * Response headers for the client: the upstream's fields as received (`raw`: a repeated
 * field stays repeated, set-cookie included), after the route's response filters.
 * Without `raw`, node's merged object.
 */
function responseHeaders(
  h: http2.IncomingHttpHeaders,
  raw: readonly string[] | undefined,
  edits: readonly HeaderModifier[] | undefined,
): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  if (raw === undefined) {
    for (const name in h) if (!CONNECTION_SPECIFIC.has(name)) out[name] = h[name];
  } else {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 58 /* : */) out[name] = raw[i + 1];
      else if (!CONNECTION_SPECIFIC.has(name)) addField(out, name, raw[i + 1]!);
    }
  }
  if (edits === undefined) return out;
  const original: string[] = [];
  const rest: http2.OutgoingHttpHeaders = {};
  for (const name in out) {
    if (name.charCodeAt(0) === 58) {
      rest[name] = out[name];
      continue;
    }
    const v = out[name]!;
    for (const x of Array.isArray(v) ? v : [v]) original.push(`${name}: ${x}`);
  }
  let lines: readonly string[] = original;
  for (const m of edits) lines = editLines(lines, m);
  addLines(rest, lines);
  return rest;
}

/** Trailers without pseudo-headers (Node hands them over with none, but a peer may try). */
function trailersOf(t: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const name in t) if (name.charCodeAt(0) !== 58) out[name] = t[name];
  return out;
}

/** The stream of an attempt, as the layers see it (timeout.ts gives it up). */
class StreamLink implements AttemptLink {
  readonly ready = false;
  readonly headTimeoutMs = 0;
  sentAt = 0;
  #cancel: () => void;
  constructor(cancel: () => void) {
    this.#cancel = cancel;
  }
  write(): boolean {
    return true; // the client's stream is piped to the upstream's: nothing is written through here
  }
  cancel(): void {
    this.#cancel();
  }
}

/**
 * The HTTP/2 codec at the bottom of a stack: sends the exchange to `ex.endpoint` as a
 * stream of a pooled session, and reports what became of it: a refused connect with
 * `codes.connect`, a reset before the response head with `codes.reset`.
 */
export function h2Forwarder(pool: H2SessionPool, codes: { readonly connect: ErrorCode; readonly reset: ErrorCode }): Handler<Picked> {
  function send(ex: Picked): void {
    const client = ex.client as H2ServerStream;
    const e = ex.endpoint;
    pool.session(e, (entry, failure) => {
      if (ex.finished || client.stream.destroyed) return;
      // This may run from the upstream session's 'connect' event: an exception must not reach the process.
      try {
        if (failure !== undefined)
          return void ex.report({ kind: 'refused', code: codes.connect, params: { address: endpointKey(e), reason: failure }, sentAt: 0 });
        if (entry.session.closed || entry.session.destroyed) return send(ex); // went away meanwhile: a fresh session
        forward(ex, client, entry, endpointKey(e));
      } catch (err) {
        client.failed(err);
      }
    });
  }

  function forward(ex: Picked, client: H2ServerStream, entry: SessionEntry, address: string): void {
    const session = entry.session;
    const down = client.stream;
    const bodyless = client.bodyless;
    // A second attempt (a retry) sends the body the first one kept (`ex.bodyQueue`),
    // once the client has sent all of it; the first attempt pipes the client's stream.
    const replay = client.piped && !bodyless;
    let up: http2.ClientHttp2Stream;
    try {
      up = session.request(requestHeaders(ex, client, ex.req.host || address), { endStream: bodyless, waitForTrailers: !bodyless });
    } catch (err) {
      if (session.closed || session.destroyed) return send(ex); // the session closed between the check and the request
      // A request node:http2 refuses to send (a CONNECT, which this mesh does not tunnel): sending it
      // again would refuse again, forever; the exchange fails, not the proxy (and not the endpoint:
      // fail() closes the attempt as abandoned).
      return ex.fail('TRELLIS_E_BAD_REQUEST', { reason: `it can't be sent as HTTP/2 (${err instanceof Error ? err.message : String(err)})` });
    }
    entry.idle.streamOpened(up);
    /** These events concern the client no more: the layers gave the attempt up, or took its answer for another. */
    let abandoned = false;
    const giveUp = (): void => {
      abandoned = true;
      if (ex.link === link) ex.link = undefined;
      down.off('close', onDownClose);
      if (!replay && !bodyless) down.unpipe(up);
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    };
    const link = new StreamLink(giveUp);
    link.sentAt = performance.now();
    ex.link = link;
    /**
     * These handlers write what the upstream sent onto the client's stream, from the
     * upstream session's events: an exception there (node refusing a header, say) resets
     * both streams and is reported as the client stream's, never reaching the process.
     */
    const guarded =
      <A extends unknown[]>(fn: (...a: A) => void) =>
      (...a: A): void => {
        try {
          fn(...a);
        } catch (err) {
          abandoned = true;
          if (!up.closed) up.close(NGHTTP2_CANCEL);
          client.failed(err);
        }
      };
    let responseTrailers: http2.OutgoingHttpHeaders | undefined;
    let responded = false;
    let trailersOnly = false;
    const onDownClose = (): void => {
      // The client cancelled (a gRPC deadline or cancel is a RST_STREAM): so does the next hop.
      if (!up.closed) up.close(down.rstCode && down.rstCode !== NGHTTP2_NO_ERROR ? down.rstCode : NGHTTP2_CANCEL);
    };
    client.cancelUpstream = () => {
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    };

    up.on('error', () => {});
    if (!bodyless) {
      up.on(
        'wantTrailers',
        guarded(() => up.sendTrailers(client.trailers === undefined ? {} : trailersOf(client.trailers))),
      );
      if (replay) {
        for (const c of ex.bodyQueue ?? []) up.write(c);
        ex.bodyQueue = undefined;
        up.end();
      } else {
        client.piped = true;
        // What keeps the body for a replay (the retry layer's recorder), if anything does.
        const recorder = ex.recorder;
        if (recorder !== undefined) down.on('data', (c: Buffer) => recorder.record(c));
        down.once('end', () => {
          ex.requestBodyDone = true;
        });
        down.pipe(up);
      }
    }

    up.on(
      'response',
      // `raw`: the fields as received (node passes it; its types leave it out).
      guarded((h: http2.IncomingHttpHeaders, flags: number, raw?: readonly string[]) => {
        if (abandoned || ex.finished || down.destroyed) return;
        const status = Number(h[':status']);
        if (!(status >= 200 && status <= 599)) {
          // nghttp2 lets any three digits through; an HTTP/2 response can't carry them on (node throws).
          giveUp();
          return void ex.report({
            kind: 'broken',
            code: 'TRELLIS_E_UPSTREAM_PROTOCOL',
            params: { address, reason: 'its response status is outside 200-599' },
            sentAt: link.sentAt,
          });
        }
        const ended = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
        const grpcStatus = ended && h['grpc-status'] !== undefined ? String(h['grpc-status']) : '';
        const outcome: HeadOutcome = {
          kind: 'head',
          status,
          grpcStatus,
          appUnavailable: status === 503 && h['trellis-error'] === 'app-unavailable',
          sentAt: link.sentAt,
          edits: undefined,
        };
        if (!ex.report(outcome)) {
          // A layer took it (a retry, another endpoint): it never reaches the client.
          if (!abandoned) giveUp();
          return;
        }
        if (ex.link === link) ex.link = undefined;
        responded = true;
        ex.status = status;
        ex.responseStarted = true;
        const out = responseHeaders(h, raw, outcome.edits);
        if (ended) {
          // Trailers-only (a gRPC error) or an empty response.
          if (grpcStatus !== '') ex.grpcStatus = grpcStatus;
          trailersOnly = true;
          down.respond(out, { endStream: true });
          return;
        }
        down.once(
          'wantTrailers',
          guarded(() => down.sendTrailers(responseTrailers ?? {})),
        );
        down.respond(out, { waitForTrailers: true });
        up.pipe(down);
      }),
    );
    up.on('data', (c: Buffer) => {
      ex.responseBytes += c.length;
    });
    up.on('trailers', (t: http2.IncomingHttpHeaders) => {
      responseTrailers = trailersOf(t);
      if (t['grpc-status'] !== undefined) ex.grpcStatus = String(t['grpc-status']);
    });

    up.on(
      'close',
      guarded(() => {
        if (abandoned || ex.finished || down.destroyed) return;
        const code = up.rstCode ?? NGHTTP2_NO_ERROR;
        // A response that ended (trailers-only, or read to its end) finishes on its own;
        // one whose session died mid-body must not leave the client waiting.
        if (code === NGHTTP2_NO_ERROR && responded && (trailersOnly || up.readableEnded)) return;
        if (responded) {
          ex.errorToken = 'upstream-reset';
          down.close(code === NGHTTP2_NO_ERROR ? http2.constants.NGHTTP2_INTERNAL_ERROR : code);
          return;
        }
        giveUp();
        // Refused before it was processed (the session went away): nothing reached the app, so the
        // same endpoint takes it on a fresh session, as HTTP/1.1 resends on a stale pooled connection.
        if (code === NGHTTP2_REFUSED_STREAM && bodyless) return send(ex);
        ex.report({ kind: 'reset', code: codes.reset, params: { address, reason: 'the stream was reset before a response' }, sentAt: link.sentAt });
      }),
    );
    down.on('close', onDownClose);
  }

  return send;
}
