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

interface ReadableStateLike {
  readingMore?: boolean;
}

/** Skips Readable's per-chunk read-more pass on a TCP socket (see above). */
export function skipReadMore(socket: net.Socket): void {
  const state = (socket as unknown as { _readableState?: ReadableStateLike })._readableState;
  if (state !== undefined && 'readingMore' in state) state.readingMore = true;
}
