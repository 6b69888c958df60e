// Property-based fuzzing of the chunked framer (chunked.ts): fed in any pieces it
// finds the same end (or the same refusal) as fed whole, and that end is where a
// reference reading of RFC 9112 §7.1 puts it; invalid framings are refused, never
// accepted with another end; it never throws. See test/helpers/fuzz.ts for replaying a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ChunkedFramer } from '../../src/http1/chunked.js';
import { parserRuns, SEED, Tally } from '../helpers/fuzz.js';
import { byteOps, chunkedBytes, chunkedSpec, cuts, mutateBytes, piecesOf } from '../helpers/http1-fuzz.js';

type Outcome = { end: number } | { error: true } | { more: true };

const isHex = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
const isCtl = (c: number): boolean => (c < 32 && c !== 9) || c === 127;
const TCHAR = new Set([..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"].map((c) => c.charCodeAt(0)));

/**
 * Where a chunked body starting at `b[0]` ends, read whole and strictly:
 *   chunk = 1*12HEXDIG *(SP / HTAB) [ ";" ext ] CRLF data CRLF   (ext: no control bytes)
 *   last-chunk = 1*12"0" (same) CRLF,  trailer = *( token ":" field-value CRLF ) CRLF
 * `more` when the bytes so far are a prefix of such a body.
 */
function reference(b: Buffer): Outcome {
  let i = 0;
  const more = { more: true } as const;
  const error = { error: true } as const;
  const crlf = (): Outcome | null => {
    if (i >= b.length) return more;
    if (b[i] !== 13) return error;
    if (i + 1 >= b.length) return more;
    if (b[i + 1] !== 10) return error;
    i += 2;
    return null;
  };
  for (;;) {
    let size = 0;
    let digits = 0;
    while (i < b.length && isHex(b[i]!)) {
      if (++digits > 12) return error;
      size = size * 16 + parseInt(String.fromCharCode(b[i]!), 16);
      i++;
    }
    if (i >= b.length) return more;
    if (digits === 0) return error;
    while (i < b.length && (b[i] === 32 || b[i] === 9)) i++;
    if (i >= b.length) return more;
    if (b[i] === 59 /* ; */) {
      while (i < b.length && b[i] !== 13) {
        if (isCtl(b[i]!)) return error;
        i++;
      }
    }
    const r = crlf();
    if (r) return r;
    if (size === 0) break;
    if (b.length - i < size) return more;
    i += size;
    const d = crlf();
    if (d) return d;
  }
  // Trailer fields, then the blank line.
  for (;;) {
    if (i >= b.length) return more;
    if (b[i] === 13) {
      const r = crlf();
      return r ?? { end: i };
    }
    const nameStart = i;
    while (i < b.length && TCHAR.has(b[i]!)) i++;
    if (i >= b.length) return more;
    if (i === nameStart || b[i] !== 58) return error;
    i++;
    while (i < b.length && b[i] !== 13) {
      if (isCtl(b[i]!)) return error;
      i++;
    }
    const r = crlf();
    if (r) return r;
  }
}

function feed(pieces: readonly Buffer[]): { outcome: Outcome; reason: string | null } {
  const f = new ChunkedFramer();
  let offset = 0;
  for (const p of pieces) {
    let r: number;
    try {
      r = f.feed(p, 0, p.length);
    } catch (err) {
      assert.fail(`ChunkedFramer threw ${String(err)}`);
    }
    if (f.error !== null) return { outcome: { error: true }, reason: f.error };
    if (r !== -1) {
      assert.ok(f.done, 'an end is reported only when done');
      return { outcome: { end: offset + r }, reason: null };
    }
    offset += p.length;
  }
  return { outcome: { more: true }, reason: null };
}

const show = (b: Buffer): string => JSON.stringify(b.toString('latin1'));

function check(body: Buffer, at: readonly number[], tally: Tally): void {
  const whole = feed([body]);
  const split = feed(piecesOf(body, at));
  const want = reference(body);
  tally.add('end' in want ? 'end' : 'error' in want ? 'error' : 'more');
  assert.deepEqual(split.outcome, whole.outcome, `fed in pieces at ${JSON.stringify(at)} differs from whole: ${show(body)}`);
  assert.deepEqual(whole.outcome, want, `framer (${whole.reason ?? 'no error'}) disagrees with RFC 9112: ${show(body)}`);
}

test('valid chunked bodies end where they end, fed whole or in any pieces, with the next message after them', (t) => {
  const tally = new Tally();
  fc.assert(
    fc.property(chunkedSpec, cuts, fc.constantFrom('', 'GET / HTTP/1.1\r\n', '0\r\n\r\n'), (spec, at, next) => {
      const body = chunkedBytes(spec);
      const withNext = Buffer.concat([body, Buffer.from(next)]);
      assert.deepEqual(feed([withNext]).outcome, { end: body.length }, show(withNext));
      check(withNext, at, tally);
    }),
    parserRuns(2000),
  );
  t.diagnostic(`valid: seed ${SEED}: ${tally}`);
});

test('mutated chunked bodies are refused or framed as RFC 9112 says, the same in any pieces', (t) => {
  const tally = new Tally();
  fc.assert(
    fc.property(chunkedSpec, byteOps, cuts, (spec, ops, at) => check(mutateBytes(chunkedBytes(spec, 0x0d), ops), at, tally)),
    parserRuns(3000),
  );
  t.diagnostic(`mutated: seed ${SEED}: ${tally}`);
  assert.ok(tally.get('error') > 0 && tally.get('end') > 0, `the generator reaches both outcomes: ${tally}`);
});

test('random bytes are refused or framed as RFC 9112 says, the same in any pieces', (t) => {
  const tally = new Tally();
  const bytes = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
  const hexish = fc.array(fc.constantFrom(...'0123456789aAfF;= \t\r\n:xX'.split('')), { maxLength: 40 }).map((a) => Buffer.from(a.join(''), 'latin1'));
  fc.assert(
    fc.property(fc.oneof(bytes, hexish), cuts, (b, at) => check(b, at, tally)),
    parserRuns(3000),
  );
  t.diagnostic(`random: seed ${SEED}: ${tally}`);
});
