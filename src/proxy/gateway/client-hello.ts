// Reads the server name (SNI, RFC 6066 §3) from the first bytes of a TLS connection
// without terminating it, for Passthrough listeners: the ClientHello is the only thing a
// TLS client sends in the clear before the handshake. Every length is checked against
// what is there, the handshake may span records (a large ClientHello, post-quantum key
// shares), and the whole is bounded: anything malformed is `invalid`, never an exception.
// As Envoy's tls_inspector, nothing is consumed: the caller replays the bytes to the backend.

import type { Socket } from 'node:net';

/** What the bytes so far say: wait for more, the SNI (undefined: the client sent none), or not a TLS ClientHello. */
export type ClientHelloRead = { kind: 'more' } | { kind: 'hello'; sni: string | undefined } | { kind: 'invalid' };

/** The most bytes a ClientHello may take before it is refused (Envoy's tls_inspector reads at most 16 KiB as well). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024 + 5 * 4;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
/** A DNS name as SNI carries it: letters, digits, '-', '.', '_' (seen in the wild), at most 253 characters. */
const HOST_NAME = /^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$/;

/** Reads `buf` (everything received so far). */
export function readClientHello(buf: Buffer): ClientHelloRead {
  if (buf.length > 0 && buf[0] !== RECORD_HANDSHAKE) return { kind: 'invalid' };
  // The handshake bytes, gathered from consecutive handshake records.
  const parts: Buffer[] = [];
  let handshake = 0;
  let at = 0;
  for (;;) {
    if (buf.length - at < 5) return buf.length >= MAX_CLIENT_HELLO_BYTES ? { kind: 'invalid' } : { kind: 'more' };
    if (buf[at] !== RECORD_HANDSHAKE || buf[at + 1] !== 3) return { kind: 'invalid' };
    const length = buf.readUInt16BE(at + 3);
    if (length === 0 || length > 16384) return { kind: 'invalid' };
    if (buf.length - at - 5 < length) return at + 5 + length > MAX_CLIENT_HELLO_BYTES ? { kind: 'invalid' } : { kind: 'more' };
    parts.push(buf.subarray(at + 5, at + 5 + length));
    handshake += length;
    at += 5 + length;
    if (handshake < 4) continue;
    const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts, handshake);
    if (hs[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'invalid' };
    const bodyLength = hs.readUIntBE(1, 3);
    if (bodyLength > MAX_CLIENT_HELLO_BYTES) return { kind: 'invalid' };
    if (handshake < 4 + bodyLength) {
      if (at >= MAX_CLIENT_HELLO_BYTES) return { kind: 'invalid' };
      continue;
    }
    const sni = serverName(hs.subarray(4, 4 + bodyLength));
    return sni === null ? { kind: 'invalid' } : { kind: 'hello', sni };
  }
}

/** The host name of a ClientHello body's server_name extension; undefined: none; null: malformed. */
function serverName(body: Buffer): string | undefined | null {
  let p = 2 + 32; // legacy_version, random
  if (body.length < p + 1) return null;
  p += 1 + body[p]!; // session id
  if (body.length < p + 2) return null;
  p += 2 + body.readUInt16BE(p); // cipher suites
  if (body.length < p + 1) return null;
  p += 1 + body[p]!; // compression methods
  if (body.length === p) return undefined; // no extensions at all (TLS 1.2 allows it)
  if (body.length < p + 2) return null;
  const end = p + 2 + body.readUInt16BE(p);
  if (end > body.length) return null;
  p += 2;
  while (p + 4 <= end) {
    const type = body.readUInt16BE(p);
    const length = body.readUInt16BE(p + 2);
    p += 4;
    if (p + length > end) return null;
    if (type === EXTENSION_SERVER_NAME) return hostName(body.subarray(p, p + length));
    p += length;
  }
  return p === end ? undefined : null;
}

/** The host_name entry of a server_name extension, lower case without a trailing dot; null: malformed or not a DNS name. */
function hostName(ext: Buffer): string | null {
  if (ext.length < 2 || ext.readUInt16BE(0) !== ext.length - 2) return null;
  let p = 2;
  while (p + 3 <= ext.length) {
    const type = ext[p]!;
    const length = ext.readUInt16BE(p + 1);
    p += 3;
    if (p + length > ext.length) return null;
    if (type === NAME_TYPE_HOST) {
      const name = ext
        .toString('latin1', p, p + length)
        .toLowerCase()
        .replace(/\.$/, '');
      return HOST_NAME.test(name) ? name : null;
    }
    p += length;
  }
  return null;
}

/** What a peek at a connection's first bytes found: its SNI (undefined: none sent), bytes that are no ClientHello, or silence past the timeout. */
export type ClientHelloPeek = { kind: 'hello'; sni: string | undefined } | { kind: 'invalid' } | { kind: 'timeout' };

/**
 * Reads `socket`'s ClientHello (bounded in bytes, and in time by `timeoutMs`), puts the
 * bytes back and pauses it, then calls `then` once with what it found (never after the
 * socket closed). A throw from `then` goes to `failed`.
 */
export function peekClientHello(socket: Socket, timeoutMs: number, then: (read: ClientHelloPeek) => void, failed: (err: unknown) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const finish = (read: ClientHelloPeek, hello?: Buffer): void => {
    // Stop listening and pause before the bytes go back: unshift on a flowing socket emits them again at once.
    done();
    socket.pause();
    try {
      if (hello !== undefined) socket.unshift(hello);
      then(read);
    } catch (err) {
      failed(err);
    }
  };
  const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
  const done = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', done);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const read = readClientHello(buf);
    if (read.kind === 'more') return;
    finish(read, read.kind === 'hello' ? buf : undefined);
  };
  socket.on('error', () => socket.destroy());
  socket.once('close', done);
  socket.on('data', onData);
}
