// The exporter's queue holds spans as the bytes of their bodies (span-queue.ts): each
// body it hands out must be byte for byte what the whole-batch encoder gives for the
// same spans (which is tested against the OTLP JSON object form in otlp-json.test.ts),
// split at the batch size, whatever the spans hold, and however far a buffer had to grow;
// a span written piece by piece is the same bytes, and one taken back leaves no trace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BODY_TAIL, bodyHead, encodeTraces, spanJson, unixNanos } from '../../src/telemetry/tracing/otlp-json.js';
import { SpanQueue } from '../../src/telemetry/tracing/span-queue.js';
import { SpanKind, type FinishedSpan } from '../../src/telemetry/tracing/span.js';

const STRINGS = ['', 'plain', 'quote " and \\ backslash', 'line\nbreak\u0000', 'emoji 🚀 é ü', 'lone \ud800 surrogate', '\u2028'];

function span(i: number, pathBytes = 20): FinishedSpan {
  const s = STRINGS[i % STRINGS.length]!;
  return {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: i.toString(16).padStart(16, '0'),
    parentSpanId: i % 2 === 0 ? '' : 'b7ad6b7169203331',
    traceState: i % 3 === 0 ? '' : s,
    name: `GET ${s}`,
    kind: SpanKind.Client,
    startMs: 1_796_513_941_415.123 + i,
    endMs: 1_796_513_941_416 + 0.9999999 + i,
    attributes: { 'url.path': `/${'é'.repeat(pathBytes)}${s}`, 'server.port': 8080 + i, ok: i % 2 === 0, share: 0.5 },
    error: i % 4 === 0,
  };
}

test('each body the queue hands out is the whole-batch encoding of its spans, split at the batch size', () => {
  const resource = { 'service.name': 'web', 'service.instance.id': 'web-0' };
  const q = new SpanQueue(bodyHead(resource), 4);
  const spans = Array.from({ length: 10 }, (_, i) => span(i));
  for (const s of spans) q.push(spanJson(s));
  assert.equal(q.length, 10);
  const bodies: string[] = [];
  const counts: number[] = [];
  for (let b = q.shift(); b !== undefined; b = q.shift()) {
    bodies.push(b.body.toString('utf8'));
    counts.push(b.spans);
  }
  assert.deepEqual(counts, [4, 4, 2]);
  assert.equal(q.length, 0);
  assert.deepEqual(bodies, [encodeTraces(resource, spans.slice(0, 4)), encodeTraces(resource, spans.slice(4, 8)), encodeTraces(resource, spans.slice(8))]);
  // Bytes equal too: the queue's UTF-8 is what Buffer.from gives the whole string.
  q.push(spanJson(spans[4]!));
  assert.deepEqual(q.shift()!.body, Buffer.from(encodeTraces(resource, [spans[4]!]), 'utf8'));
});

test('a batch larger than its first buffer grows and stays exact; a span bigger than the buffer fits', () => {
  const resource = { 'service.name': 'api' };
  const q = new SpanQueue(bodyHead(resource), 512);
  // About 300 KB of multi-byte paths: the 16 KB buffer doubles several times.
  const spans = Array.from({ length: 300 }, (_, i) => span(i, 500));
  spans.push(span(300, 40_000)); // one span of 80 KB
  for (const s of spans) q.push(spanJson(s));
  const b = q.shift()!;
  assert.equal(b.spans, 301);
  assert.deepEqual(b.body, Buffer.from(encodeTraces(resource, spans), 'utf8'));
  assert.equal(q.shift(), undefined);
});

test('after a body is taken, spans queued later start a new one', () => {
  const q = new SpanQueue(bodyHead({}), 8);
  q.push(spanJson(span(1)));
  const first = q.shift()!;
  q.push(spanJson(span(2)));
  q.push(spanJson(span(3)));
  assert.equal(first.body.toString(), encodeTraces({}, [span(1)]), 'the taken body is not touched by later spans');
  assert.equal(q.shift()!.body.toString(), encodeTraces({}, [span(2), span(3)]));
});

test('a recycled body’s buffer carries the next batch, exactly, and a body still held is never written to', () => {
  const resource = { 'service.name': 'web' };
  const q = new SpanQueue(bodyHead(resource), 4);
  for (let i = 0; i < 4; i++) q.push(spanJson(span(i, 300)));
  const first = q.shift()!;
  const firstBytes = Buffer.from(first.body);
  q.push(spanJson(span(10)));
  const held = q.shift()!; // not recycled: the queue must not reuse it
  q.recycle(first.body);
  for (let i = 20; i < 24; i++) q.push(spanJson(span(i)));
  const next = q.shift()!;
  assert.equal(next.body.buffer, first.body.buffer, 'the recycled buffer was reused');
  assert.deepEqual(
    next.body,
    Buffer.from(
      encodeTraces(
        resource,
        [20, 21, 22, 23].map((i) => span(i)),
      ),
      'utf8',
    ),
  );
  assert.deepEqual(held.body, Buffer.from(encodeTraces(resource, [span(10)]), 'utf8'));
  assert.notDeepEqual(firstBytes, next.body);
  // A batch larger than the recycled buffer grows out of it, still exact.
  q.recycle(held.body);
  const big = Array.from({ length: 4 }, (_, i) => span(30 + i, 20_000));
  for (const s of big) q.push(spanJson(s));
  assert.deepEqual(q.shift()!.body, Buffer.from(encodeTraces(resource, big), 'utf8'));
});

test('a span written piece by piece: strings escaped as JSON.stringify escapes them, times as unixNanos prints them', () => {
  const q = new SpanQueue('', 1);
  const strings = [...STRINGS, 'DEL \u007f', 'tab\t', 'a'.repeat(5000), '0af7651916cd43dd8448eb211c80319c'];
  const times = [
    0,
    1.5,
    12.345678,
    999_999_999.9999999,
    1e9,
    1_796_513_941_415.123,
    1_796_513_941_416 + 0.9999999,
    1_796_513_941_416 + 0.0000004,
    1e15 - 0.5,
    1e15,
    9e15 + 0.25,
  ];
  for (const s of strings) {
    q.beginSpan();
    q.string(s);
    q.endSpan();
    const b = q.shift()!.body.toString('utf8');
    assert.equal(b.slice(0, b.length - BODY_TAIL.length), JSON.stringify(s));
  }
  for (const ms of times) {
    q.beginSpan();
    q.nanos(ms);
    q.endSpan();
    const b = q.shift()!.body.toString('utf8');
    assert.equal(b.slice(0, b.length - BODY_TAIL.length), `"${unixNanos(ms)}"`, `${ms}`);
  }
});

test('a span taken back (its writer failed) leaves the queue as if it had never begun, in a batch or a new one', () => {
  const resource = { 'service.name': 'web' };
  const q = new SpanQueue(bodyHead(resource), 2);
  q.push(spanJson(span(1)));
  q.beginSpan();
  q.json('{"traceId":"half');
  q.string('x'.repeat(100_000)); // grows the buffer before it fails
  q.abortSpan();
  assert.equal(q.length, 1);
  q.push(spanJson(span(2)));
  // A new batch begun for the span taken back is gone with it.
  q.beginSpan();
  q.raw(Buffer.from('{"x'));
  q.abortSpan();
  assert.equal(q.length, 2);
  assert.equal(q.shift()!.body.toString('utf8'), encodeTraces(resource, [span(1), span(2)]));
  assert.equal(q.shift(), undefined);
});
