// What a listener's entry code (protocol detection, the HTTP/1.1 and HTTP/2 servers,
// the TCP proxy) gets from the sidecar besides the pipeline: the limits to hold
// connections to, and one place to report a connection or stream that failed. An
// exception thrown while handling one connection ends that connection (or HTTP/2
// stream) only, is counted and logged there, and never reaches the process: no byte a
// client sends may end the proxy.
import type net from 'node:net';
import type { LimitsRef } from './limits.js';

import type { ConnectionErrorReason, LimitRefusal, ListenerKind } from '../../api/views.js';
export type { ConnectionErrorReason, LimitRefusal, ListenerKind } from '../../api/views.js';

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
    out += ` ${frames
      .slice(at + 5, end === -1 ? undefined : end)
      .trim()
      .slice(0, 200)}`;
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
