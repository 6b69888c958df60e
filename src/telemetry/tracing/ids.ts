// Trace and span ids: random, as W3C Trace Context asks (its "random" flag aside, ids must
// be unique enough that two traces never meet). Random bytes are drawn from the CSPRNG a
// pool at a time and turned into hex once per pool, so an id costs a slice of a string,
// not a syscall nor a conversion of its own (a trace id and a span id per request, sampled
// or not: the unsampled path writes a traceparent too).
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
/** The pool as lower-case hex (two digits per byte), made at each refill. */
let poolHex = '';
let at = POOL_BYTES;

function take(n: number): number {
  if (at + n > POOL_BYTES) {
    randomFillSync(pool);
    poolHex = pool.toString('hex');
    at = 0;
  }
  const start = at;
  at += n;
  return start;
}

/** The pool offset of `n` fresh random bytes, never all zero (an all-zero id is invalid in W3C and B3). */
function takeId(n: number): number {
  for (;;) {
    const start = take(n);
    for (let i = start; i < start + n; i++) if (pool[i] !== 0) return start;
  }
}

/** `n` random bytes as lower-case hex, never all zero. */
function randomHex(n: number): string {
  const start = takeId(n);
  return poolHex.slice(2 * start, 2 * (start + n));
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/**
 * Writes `n` random bytes as lower-case hex digits into `out` at `at`, never all zero
 * (as {@link newTraceId}): for an id that goes straight into a line being built, with
 * no string of its own.
 */
export function writeRandomHex(out: Buffer, at: number, n: number): void {
  const start = takeId(n);
  for (let i = 0; i < n; i++) {
    const b = pool[start + i]!;
    out[at + 2 * i] = HEX_DIGITS[b >> 4]!;
    out[at + 2 * i + 1] = HEX_DIGITS[b & 15]!;
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

/** For tests: the pool's bytes are all used up, so the next id refills it (with `fill` instead of the CSPRNG, once). */
export function drainIdPoolForTest(fill?: (pool: Buffer) => void): void {
  at = POOL_BYTES;
  if (fill !== undefined) {
    randomFillSync(pool);
    fill(pool);
    poolHex = pool.toString('hex');
    at = 0;
  }
}
