// Trace and span ids: random, as W3C Trace Context asks (its "random" flag aside, ids must
// be unique enough that two traces never meet). Random bytes are drawn from the CSPRNG a
// pool at a time, so an id costs a slice of a buffer and one hex string, not a syscall.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let at = POOL_BYTES;

function take(n: number): number {
  if (at + n > POOL_BYTES) {
    randomFillSync(pool);
    at = 0;
  }
  const start = at;
  at += n;
  return start;
}

/** `n` random bytes as lower-case hex, never all zero (an all-zero id is invalid in W3C and B3). */
function randomHex(n: number): string {
  for (;;) {
    const start = take(n);
    const hex = pool.toString('hex', start, start + n);
    for (let i = start; i < start + n; i++) if (pool[i] !== 0) return hex;
  }
}

/** A new 128-bit trace id (32 hex digits). */
export function newTraceId(): string {
  return randomHex(16);
}

/** A new 64-bit span id (16 hex digits). */
export function newSpanId(): string {
  return randomHex(8);
}
