// What a proxy socket does not need from Node's stream machinery, switched off.
//
// After every chunk a net.Socket emits, Node's Readable schedules `maybeReadMore`: a
// process.nextTick, then a read(0) pass that asks the handle to read more. A TCP socket
// needs none of it: libuv reads whenever the socket is readable and stops only when the
// buffer is over its high-water mark, and read()/resume() restart it (Socket._read).
// At the bench's max rate that empty pass, and the tick queue it wakes, were 10–15% of a
// sidecar's CPU (perf, bench/results of 2026-11-23). Marking the stream as already
// "reading more" keeps Readable from scheduling it; pause(), resume(), backpressure and
// EOF work as before (test/proxy/socket-tuning.test.ts).
//
// `readingMore` is Node's own state field (an accessor over its state bits since Node
// 20). Where a Node version lacks it, nothing is set and the socket behaves as stock.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

interface ReadableStateLike {
  readingMore?: boolean;
}

/** Skips Readable's per-chunk read-more pass on a TCP socket (see above). */
export function skipReadMore(socket: net.Socket): void {
  const state = (socket as unknown as { _readableState?: ReadableStateLike })._readableState;
  if (state !== undefined && 'readingMore' in state) state.readingMore = true;
}

interface WritableStateLike {
  writing?: boolean;
  writelen?: number;
}

/**
 * Whether `socket` may still hold a reference to the chunk just written to it, so the
 * memory it came from (a reused read buffer) must not be overwritten yet.
 *
 * A plain TCP socket hands the chunk itself to libuv, which writes from it until the
 * write completes: any unwritten byte (`writableLength > 0`) holds it. A TLS socket's
 * native TLSWrap encrypts the chunk at once (SSL_write copies it into the TLS record; a
 * write before the handshake ends is copied too) and writes the ciphertext, so the only
 * bytes that still refer to the caller's memory are those Node's Writable queued behind a
 * write in flight. Yet a TLS socket's `writableLength` stays above 0 until the ciphertext
 * write's callback, after nearly every write: judged as TCP, every response relayed to a
 * peer sidecar over mTLS took a fresh 64 KiB read buffer (bench of 2026-12-05: about half
 * the inbound sidecar's CPU per request under mTLS). Anything else (HTTP/2's adapter, a
 * socket still connecting, a Node without these state fields) is judged as TCP.
 */
export function holdsLastWrite(socket: Duplex): boolean {
  const pending = socket.writableLength;
  if (pending === 0) return false;
  if (!(socket instanceof tls.TLSSocket) || socket.connecting) return true;
  const state = (socket as unknown as { _writableState?: WritableStateLike })._writableState;
  if (state === undefined || typeof state.writing !== 'boolean' || typeof state.writelen !== 'number') return true;
  return pending > (state.writing ? state.writelen : 0);
}
