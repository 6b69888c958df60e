// The OTLP/HTTP JSON body the exporter sends is written as a string (otlp-json.ts
// encodeTraces), not built as objects and stringified: it must be byte for byte the
// body the object form gives (encodeTracesReference, the OTLP JSON mapping spelled
// out), whatever the spans hold, hostile strings included, and parse as that request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeTraces, encodeTracesReference, unixNanos } from '../../src/telemetry/tracing/otlp-json.js';
import { SpanKind, type AttributeValue, type FinishedSpan } from '../../src/telemetry/tracing/span.js';

const HOSTILE = [
  '',
  'plain',
  'quote " and \\ backslash',
  'line\nbreak\ttab\r\u0000nul\u001f',
  'emoji 🚀 é',
  'lone \ud800 surrogate',
  'sep \u2028\u2029',
  '</script>',
];
const NUMBERS = [0, -0, 1, -42, 2 ** 53, 1e21, 0.25, -1.5e-7, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_VALUE];

function span(i: number, attributes: Record<string, AttributeValue>): FinishedSpan {
  return {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: i.toString(16).padStart(16, '0'),
    parentSpanId: i % 2 === 0 ? '' : 'b7ad6b7169203331',
    traceState: i % 3 === 0 ? '' : HOSTILE[i % HOSTILE.length]!,
    name: `GET ${HOSTILE[i % HOSTILE.length]}`,
    kind: i % 2 === 0 ? SpanKind.Client : SpanKind.Server,
    startMs: 1_796_513_941_415.123 + i * 0.0004,
    // Rounds up to the next whole millisecond: the nanoseconds carry.
    endMs: 1_796_513_941_416 + 0.9999999 + i,
    attributes,
    error: i % 4 === 0,
  };
}

test('the string encoder writes exactly what the object form gives, for every kind of value', () => {
  const spans: FinishedSpan[] = [];
  let i = 0;
  for (const s of HOSTILE) spans.push(span(i++, { 'url.path': s, [s]: s }));
  for (const n of NUMBERS) spans.push(span(i++, { 'server.port': n, flag: n > 0 }));
  spans.push(span(i++, {}));
  const resource = { 'service.name': 'web', 'service.instance.id': 'web-0', weird: HOSTILE[3]!, n: 3, d: 0.5, b: false };
  for (const batch of [[], spans.slice(0, 1), spans]) {
    const body = encodeTraces(resource, batch);
    assert.equal(body, encodeTracesReference(resource, batch));
    // Twice: the resource's part is cached per resource object.
    assert.equal(encodeTraces(resource, batch), body);
  }
  assert.equal(encodeTraces({ 'service.name': 'api' }, spans), encodeTracesReference({ 'service.name': 'api' }, spans), 'another resource');
});

test('the body parses as an ExportTraceServiceRequest with the spans in order', () => {
  const spans = [span(1, { 'http.response.status_code': 503 }), span(2, { 'trellis.sampled_by': 'error' })];
  const parsed = JSON.parse(encodeTraces({ 'service.name': 'web' }, spans)) as {
    resourceSpans: { scopeSpans: { spans: { spanId: string; startTimeUnixNano: string; attributes: unknown[] }[] }[] }[];
  };
  const got = parsed.resourceSpans[0]!.scopeSpans[0]!.spans;
  assert.deepEqual(
    got.map((s) => s.spanId),
    spans.map((s) => s.spanId),
  );
  assert.match(got[0]!.startTimeUnixNano, /^\d{19}$/);
  assert.deepEqual(got[0]!.attributes, [{ key: 'http.response.status_code', value: { intValue: '503' } }]);
});

test('attributes stay exact while the attribute cache fills and starts over, for values too long to cache, and for the same key with values of every type', () => {
  const spans: FinishedSpan[] = [];
  for (let i = 0; i < 2500; i++)
    spans.push(
      span(i, { 'url.path': `/p/${i}${HOSTILE[i % HOSTILE.length]}`, 'http.route': 'shop', long: `${'x'.repeat(100)}${HOSTILE[i % HOSTILE.length]}` }),
    );
  const resource = { 'service.name': 'web' };
  assert.equal(encodeTraces(resource, spans), encodeTracesReference(resource, spans));
  // Again, now that the cache holds the later values: the earlier ones are made afresh, the same.
  assert.equal(encodeTraces(resource, spans), encodeTracesReference(resource, spans));
  // The same key with a number, a string, a boolean and -0: each its own cached JSON.
  const mixed = [200, '200', true, 'true', 0, -0, '0', 0.5, 1e21].map((v, i) => span(i, { 'http.response.status_code': v }));
  for (let round = 0; round < 2; round++) assert.equal(encodeTraces(resource, mixed), encodeTracesReference(resource, mixed));
});

test('times print as the same nanoseconds whether they take the split path (times now) or not', () => {
  // The straightforward form: whole milliseconds, then six digits of nanoseconds.
  const reference = (ms: number): string => {
    let whole = Math.floor(ms);
    let frac = Math.round((ms - whole) * 1e6);
    if (frac >= 1e6) {
      whole++;
      frac -= 1e6;
    }
    return `${whole}${String(frac).padStart(6, '0')}`;
  };
  const times = [0, 0.5, 1.9999999, 999_999_999.9999999, 1e9, 1e9 + 0.5, 1e12, 1e12 + 0.0000004, 1_796_513_000_000, 1_796_512_999_999.75, 2 ** 52, 2 ** 53 - 1];
  for (let i = 0; i < 10_000; i++) times.push(performance.timeOrigin + i * 0.1234567, Math.random() * 2e12);
  for (const ms of times) assert.equal(unixNanos(ms), reference(ms), String(ms));
  assert.equal(unixNanos(1_796_513_000_000.25), '1796513000000250000');
});
