// What a listener's entry code (protocol detection, the HTTP/1.1 and HTTP/2 servers,
// the TCP proxy) gets from the sidecar besides the pipeline: the limits to hold
// connections to, and one place to report a connection or stream that failed. An
// exception thrown while handling one connection ends that connection (or HTTP/2
// stream) only, is counted and logged there, and never reaches the process: no byte a
// client sends may end the proxy.
import type net from 'node:net';
import type { LimitsRef } from './limits.js';

/** Which listener a connection came in on (a metric label). */
export type ListenerKind = 'inbound' | 'outbound' | 'http-proxy';

/**
 * Why a connection or stream was ended (a metric label, from this fixed set; never from
 * an error's message):
 * - `accept`: setting up the connection threw (the listener callback, protocol detection);
 * - `http1`: handling an HTTP/1.1 connection's bytes or requests threw;
 * - `h2-session`: setting up an HTTP/2 session threw;
 * - `h2-stream`: handling one HTTP/2 stream threw (that stream is reset; the session lives on);
 * - `h2-protocol`: the client broke HTTP/2 (a connection error from nghttp2, or its GOAWAY with an error);
 * - `tcp`: the TCP proxy threw while connecting a client.
 */
export type ConnectionErrorReason = 'accept' | 'http1' | 'h2-session' | 'h2-stream' | 'h2-protocol' | 'tcp';

/**
 * A request or stream refused by a limit (a metric label):
 * - `h2-streams`: an HTTP/2 stream refused before it reached the proxy's code, by
 *   SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM) or node's hard caps (see stream-client.ts);
 * - `h2-header-list`: an HTTP/2 request whose header list is over h2MaxHeaderListBytes (answered 431).
 */
export type LimitRefusal = 'h2-streams' | 'h2-header-list';

export interface ListenerContext {
  readonly listener: ListenerKind;
  /** The limits in force; read when a connection arrives. */
  readonly limits: LimitsRef;
  /**
   * Reports a connection or stream that failed: counts it, writes one log line, and
   * destroys `socket` when given (a stream is reset by its caller).
   */
  failed(reason: ConnectionErrorReason, err: unknown, socket?: net.Socket): void;
  /** Counts `n` requests or streams refused by a limit. */
  refused(limit: LimitRefusal, n?: number): void;
  /** What an HTTP/1.1 connection on this listener is held to, and where its refused requests are counted. */
  readonly http1: Http1Options;
}

const SAFE_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/**
 * An error as a log field: its class, its code when it is one of node's (`ERR_…`,
 * `ECONNRESET`), and where it was thrown (the first frame of its stack). Never its
 * message: a message may quote request bytes (a header name, a value), and no value
 * from a request goes into a log unchecked.
 */
export function errorSummary(err: unknown): string {
  if (!(err instanceof Error)) return typeof err;
  const code = (err as { code?: unknown }).code;
  let out = err.name;
  if (typeof code === 'string' && SAFE_CODE.test(code)) out += ` ${code}`;
  // The stack opens with `name: message`, which may hold newlines of its own: read the frames after it.
  const stack = err.stack ?? '';
  const head = String(err);
  const frames = stack.startsWith(head) ? stack.slice(head.length) : '';
  const at = frames.indexOf('\n    at ');
  if (at !== -1) {
    const end = frames.indexOf('\n', at + 1);
    out += ` ${frames.slice(at + 5, end === -1 ? undefined : end).trim().slice(0, 200)}`;
  }
  return out;
}

/** What an HTTP/1.1 connection on a listener is held to (http-server-connection.ts). */
export interface Http1Options {
  /** The listener's limits (limits.ts), read once when a connection arrives. */
  readonly limits: LimitsRef;
  /** Told the error token of each request refused before it became an exchange (400, 431, 408), for a metric. */
  readonly refused?: (token: string) => void;
}
