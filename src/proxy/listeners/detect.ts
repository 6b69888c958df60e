// Which HTTP a connection speaks, from its first bytes: a client with prior knowledge
// of HTTP/2 opens with the connection preface (RFC 9113 §3.4), anything else is read
// as HTTP/1.1. The first chunk is looked at once; an HTTP/1.1 connection is handed on
// with that same chunk (no copy), so its path costs one byte compare.
import type http2 from 'node:http2';
import type net from 'node:net';
import type { Handler } from '../stack/exchange.js';
import { HttpServerConnection } from '../http1/http-server-connection.js';
import type { ListenerContext } from './listener-context.js';

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** 'h2' for the whole preface, 'h1' when the bytes can't be its start, 'more' for a prefix of it. */
export function sniffPreface(buf: Buffer): 'h2' | 'h1' | 'more' {
  if (buf[0] !== 0x50 /* P */) return 'h1';
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (H2_PREFACE.compare(buf, 0, n, 0, n) !== 0) return 'h1';
  return n === H2_PREFACE.length ? 'h2' : 'more';
}

/** The HTTP/2 server a connection is handed to, made (and node:http2 loaded) on first use. */
export type H2Server = () => Promise<http2.Http2Server>;

/**
 * Serves an accepted HTTP connection as HTTP/1.1 (through `h1`) or HTTP/2 (through `h2`).
 * A connection that sends nothing is closed after the idle timeout, as an idle
 * HTTP/1.1 one is. Anything thrown while reading its first bytes ends this connection
 * only, reported to `ctx`.
 */
export function serveHttp(socket: net.Socket, h1: Handler, h2: H2Server, ctx: ListenerContext): void {
  let seen: Buffer | undefined;
  const silent = (): void => {
    socket.destroy();
  };
  socket.setTimeout(ctx.limits.current.idleTimeoutMs, silent);
  const onData = (chunk: Buffer): void => {
    try {
      const buf = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const kind = sniffPreface(buf);
      if (kind === 'more') {
        seen = buf;
        socket.once('data', onData);
        return;
      }
      socket.removeListener('timeout', silent);
      handOver(socket, kind, buf, h1, h2, ctx);
    } catch (err) {
      ctx.failed('accept', err, socket);
    }
  };
  socket.once('data', onData);
  // An error before the first byte (a reset) must not crash the process.
  socket.once('error', () => socket.destroy());
}

/**
 * Gives a connection whose first bytes (`buf`, already read) named its protocol to the
 * HTTP/1.1 codec (which takes the bytes as they are), or back to the socket and on to
 * the HTTP/2 server (whose session reads what is buffered on the socket first).
 */
function handOver(socket: net.Socket, kind: 'h1' | 'h2', buf: Buffer, h1: Handler, h2: H2Server, ctx: ListenerContext): void {
  if (kind === 'h1') {
    new HttpServerConnection(socket, h1, buf, ctx.http1, (err) => ctx.failed('http1', err, socket));
    return;
  }
  socket.pause();
  socket.unshift(buf);
  socket.setNoDelay(true); // small frames (HEADERS, WINDOW_UPDATE) must not wait for Nagle
  socket.setTimeout(0); // detection's timer: the session's idle timeout takes over
  h2().then(
    (server) => {
      if (socket.destroyed) return;
      try {
        server.emit('connection', socket);
      } catch (err) {
        ctx.failed('h2-session', err, socket);
      }
    },
    (err: unknown) => ctx.failed('h2-session', err, socket),
  );
}

/** Longest request line protocol detection waits for before calling the bytes opaque. */
const MAX_REQUEST_LINE = 8 * 1024;
const REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP\/1\.[01]\r\n/;
const METHOD_START = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^\r\n]*$/;

/**
 * What a connection of a service with no declared protocol speaks, from its first
 * bytes: the HTTP/2 preface, an HTTP/1.x request line, or anything else (opaque);
 * 'more' while the bytes so far could still be either HTTP.
 */
export function sniffProtocol(buf: Buffer): 'h2' | 'h1' | 'opaque' | 'more' {
  const preface = sniffPreface(buf);
  if (preface !== 'h1') return preface;
  const s = buf.toString('latin1', 0, Math.min(buf.length, MAX_REQUEST_LINE));
  if (s.indexOf('\r\n') !== -1) return REQUEST_LINE.test(s) ? 'h1' : 'opaque';
  return buf.length < MAX_REQUEST_LINE && METHOD_START.test(s) ? 'more' : 'opaque';
}

/**
 * Serves a connection whose protocol is not declared: HTTP/1.1 or HTTP/2 when its
 * first bytes say so, else `opaque` (a TCP proxy) with the bytes read so far put back.
 * A client that sends nothing within `timeoutMs` (a server-first protocol, such as
 * MySQL or SMTP) is opaque too, after that wait: such services should declare tcp.
 */
export function detectProtocol(
  socket: net.Socket,
  h1: Handler,
  h2: H2Server,
  opaque: (socket: net.Socket) => void,
  timeoutMs: number,
  ctx: ListenerContext,
): void {
  let seen: Buffer | undefined;
  const asOpaque = (): void => {
    try {
      opaque(socket);
    } catch (err) {
      ctx.failed('tcp', err, socket);
    }
  };
  const timer = setTimeout(() => {
    socket.removeListener('data', onData);
    socket.pause();
    if (seen !== undefined) socket.unshift(seen);
    asOpaque();
  }, timeoutMs);
  const onData = (chunk: Buffer): void => {
    try {
      const buf = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const kind = sniffProtocol(buf);
      if (kind === 'more') {
        seen = buf;
        return;
      }
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (kind !== 'opaque') return handOver(socket, kind, buf, h1, h2, ctx);
      socket.pause();
      socket.unshift(buf);
    } catch (err) {
      clearTimeout(timer);
      ctx.failed('accept', err, socket);
      return;
    }
    asOpaque();
  };
  socket.on('data', onData);
  socket.once('error', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
}
