// Trace context parsing: W3C traceparent/tracestate and B3 (single and multi), valid and
// malformed. A malformed context is absent (Malformed: replaced before the next hop),
// never an exception, whatever the bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  contextLines,
  extractTraceContext,
  scanTraceContext,
  soleTraceparent,
  traceparentSpanIdAt,
  TraceScan,
} from '../../src/telemetry/tracing/trace-context.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

test('a W3C traceparent: the sampled flag decides, ids come out as sent', () => {
  assert.equal(scanTraceContext([`traceparent: 00-${TRACE}-${SPAN}-01`]), TraceScan.Sampled);
  assert.equal(scanTraceContext([`Traceparent: 00-${TRACE}-${SPAN}-00`]), TraceScan.Unsampled);
  // Only the lowest flag bit is "sampled" (03: sampled and random).
  assert.equal(scanTraceContext([`traceparent: 00-${TRACE}-${SPAN}-03`]), TraceScan.Sampled);
  const ctx = extractTraceContext(['host: x', `traceparent:00-${TRACE}-${SPAN}-01  `, 'tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE']);
  assert.deepEqual(ctx, { traceId: TRACE, spanId: SPAN, sampled: true, traceState: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', format: 'w3c' });
});

test('a later traceparent version may carry more fields; version ff and version 00 with more are invalid', () => {
  assert.equal(scanTraceContext([`traceparent: 01-${TRACE}-${SPAN}-01-whatever`]), TraceScan.Sampled);
  assert.equal(scanTraceContext([`traceparent: ff-${TRACE}-${SPAN}-01`]), TraceScan.Malformed);
  assert.equal(scanTraceContext([`traceparent: 00-${TRACE}-${SPAN}-01-extra`]), TraceScan.Malformed);
});

test('malformed traceparents are treated as absent', () => {
  const bad = [
    `00-${TRACE.toUpperCase()}-${SPAN}-01`, // upper case
    `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
    `00-${TRACE}-${SPAN}-0g`,
    `00-${TRACE}-${SPAN}`,
    `00_${TRACE}-${SPAN}-01`,
    `00-${TRACE.slice(1)}-${SPAN}-01`,
    '',
    'x'.repeat(100_000),
  ];
  for (const v of bad) {
    assert.equal(scanTraceContext([`traceparent: ${v}`]), TraceScan.Malformed, v.slice(0, 80));
    assert.equal(extractTraceContext([`traceparent: ${v}`]), undefined);
  }
  // Two traceparent headers: which one is meant is unknown, so neither is used.
  assert.equal(scanTraceContext([`traceparent: 00-${TRACE}-${SPAN}-01`, `traceparent: 00-${TRACE}-${SPAN}-01`]), TraceScan.Malformed);
  assert.equal(scanTraceContext(['host: a', 'accept: */*']), TraceScan.None);
});

test('a tracestate too long or not list syntax is not passed on', () => {
  const tp = `traceparent: 00-${TRACE}-${SPAN}-01`;
  assert.equal(extractTraceContext([tp, `tracestate: a=${'b'.repeat(600)}`])?.traceState, '');
  assert.equal(extractTraceContext([tp, 'tracestate: novalue'])?.traceState, '');
  assert.equal(extractTraceContext([tp, 'tracestate: a=1', 'tracestate: b=2'])?.traceState, 'a=1,b=2');
});

test('B3 single: 128- and 64-bit ids, a sampling decision, a parent; a 64-bit id is widened', () => {
  assert.equal(scanTraceContext([`b3: ${TRACE}-${SPAN}-1`]), TraceScan.Sampled);
  assert.equal(scanTraceContext([`b3: ${TRACE}-${SPAN}-0-${SPAN}`]), TraceScan.Unsampled);
  assert.equal(scanTraceContext([`b3: ${TRACE}-${SPAN}-d`]), TraceScan.Sampled, 'debug implies sampled');
  assert.equal(scanTraceContext([`b3: ${TRACE}-${SPAN}`]), TraceScan.Deferred);
  assert.deepEqual(extractTraceContext([`b3: a3ce929d0e0e4736-${SPAN}-1`]), {
    traceId: `0000000000000000a3ce929d0e0e4736`,
    spanId: SPAN,
    sampled: true,
    traceState: '',
    format: 'b3',
  });
  for (const v of ['0', '1', `${TRACE}-${SPAN}-x`, `${TRACE}-${SPAN}-1-short`, `${TRACE}`, `${TRACE}-zz${SPAN.slice(2)}-1`]) {
    assert.equal(scanTraceContext([`b3: ${v}`]), TraceScan.Malformed, v);
  }
});

test('B3 multi: x-b3-traceid and x-b3-spanid, with x-b3-sampled or x-b3-flags', () => {
  const ids = [`X-B3-TraceId: ${TRACE}`, `X-B3-SpanId: ${SPAN}`];
  assert.equal(scanTraceContext([...ids, 'X-B3-Sampled: 1']), TraceScan.Sampled);
  assert.equal(scanTraceContext([...ids, 'X-B3-Sampled: true']), TraceScan.Sampled);
  assert.equal(scanTraceContext([...ids, 'X-B3-Sampled: 0']), TraceScan.Unsampled);
  assert.equal(scanTraceContext([...ids, 'X-B3-Flags: 1']), TraceScan.Sampled);
  assert.equal(scanTraceContext(ids), TraceScan.Deferred);
  assert.equal(scanTraceContext([...ids, 'X-B3-Sampled: maybe']), TraceScan.Malformed);
  assert.equal(scanTraceContext([`X-B3-TraceId: ${TRACE}`]), TraceScan.Malformed, 'no span id');
  assert.equal(extractTraceContext([...ids, 'x-b3-sampled: 1'])?.format, 'b3multi');
});

test('traceparent wins over b3, and b3 over x-b3-*; a malformed one gives way to the next', () => {
  const other = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
  const lines = [`b3: ${other}-${SPAN}-0`, `traceparent: 00-${TRACE}-${SPAN}-01`];
  assert.equal(extractTraceContext(lines)?.traceId, TRACE);
  assert.equal(extractTraceContext([`traceparent: junk`, `b3: ${other}-${SPAN}-0`])?.traceId, other);
  assert.equal(scanTraceContext([`traceparent: junk`, `b3: ${other}-${SPAN}-0`]), TraceScan.Unsampled);
});

test('context lines for the next hop: traceparent always, and the B3 format the request came in', () => {
  assert.equal(contextLines(TRACE, SPAN, true, 'w3c'), `traceparent: 00-${TRACE}-${SPAN}-01\r\n`);
  assert.equal(contextLines(TRACE, SPAN, false, 'b3'), `traceparent: 00-${TRACE}-${SPAN}-00\r\nb3: ${TRACE}-${SPAN}-0\r\n`);
  assert.match(contextLines(TRACE, SPAN, true, 'b3multi'), /x-b3-traceid: .*\r\nx-b3-spanid: .*\r\nx-b3-sampled: 1\r\n$/);
});

test('no header bytes make the parser throw, and what it accepts is well formed', () => {
  const name = fc.constantFrom('traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-flags', 'TRACEPARENT', 'host');
  const value = fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom(`00-${TRACE}-${SPAN}-01`, `${TRACE}-${SPAN}-1`, TRACE, SPAN));
  fc.assert(
    fc.property(fc.array(fc.tuple(name, value), { maxLength: 6 }), (pairs) => {
      const lines = pairs.map(([n, v]) => `${n}: ${v}`);
      const scan = scanTraceContext(lines);
      const ctx = extractTraceContext(lines);
      if (scan === TraceScan.None || scan === TraceScan.Malformed) assert.equal(ctx, undefined);
      else {
        assert.match(ctx!.traceId, /^[0-9a-f]{32}$/);
        assert.match(ctx!.spanId, /^[0-9a-f]{16}$/);
      }
    }),
    { numRuns: 2000 },
  );
});

test('soleTraceparent: only a lone, exactly version-00 sampled traceparent may have its span id written over in place', () => {
  const tp = 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  assert.equal(soleTraceparent(['host: a', tp, 'tracestate: k=v']), 1);
  const at = traceparentSpanIdAt(tp);
  assert.equal(tp.slice(at, at + 16), 'b7ad6b7169203331');
  assert.equal(soleTraceparent(['host: a', 'TraceParent:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']), 1);
  for (const lines of [
    ['host: a'],
    [tp, tp],
    [tp, 'b3: 0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1'],
    [tp, 'x-b3-parentspanid: b7ad6b7169203331'],
    ['traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'],
    ['traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03'],
    ['traceparent: 01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'],
    ['traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 '],
    ['traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01'],
    ['traceparent: 00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01'],
    ['traceparent:  00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x'],
  ]) {
    assert.equal(soleTraceparent(lines), -1, lines.join(' | '));
  }
});
