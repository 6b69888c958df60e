// The proxy's span exporter and sampler: a slow or stopped collector costs dropped
// spans (counted), never a growing queue or a wait; head sampling follows its rate with
// an injected random.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpanExporter } from '../../src/telemetry/tracing/exporter.js';
import { SpanKind, type FinishedSpan } from '../../src/telemetry/tracing/span.js';
import { Tracer } from '../../src/telemetry/tracing/tracer.js';
import { eventually } from '../helpers/eventually.js';
import { startCollector } from '../helpers/otlp-collector.js';

function span(i: number): FinishedSpan {
  const hex = i.toString(16).padStart(16, '0');
  return {
    traceId: `${hex}${hex}`,
    spanId: hex,
    parentSpanId: '',
    traceState: '',
    name: `s${i}`,
    kind: SpanKind.Client,
    startMs: 1.5e12,
    endMs: 1.5e12 + 1.25,
    attributes: { n: i },
    error: false,
  };
}

/** A seeded random (mulberry32), so a sampling test is exact from run to run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('spans reach the collector in batches, with their times in nanoseconds', async () => {
  const c = await startCollector();
  const e = new SpanExporter({ endpoint: c.url, resource: { 'service.name': 'web' }, batchSpans: 4, flushIntervalMs: 60_000 });
  try {
    for (let i = 1; i <= 10; i++) e.add(span(i));
    await eventually(() => assert.equal(c.spans.length, 8), { what: 'two full batches sent without waiting for the timer' });
    await e.flush();
    assert.equal(c.spans.length, 10);
    assert.equal(e.exported, 10);
    assert.equal(c.spans[0]!.service, 'web');
    assert.equal(c.spans[0]!.end - c.spans[0]!.start, 1_250_000n);
  } finally {
    await e.close();
    await c.close();
  }
});

test('flush() while a batch is in flight sends the spans queued behind it too', async () => {
  const c = await startCollector();
  const e = new SpanExporter({ endpoint: c.url, resource: {}, batchSpans: 4, flushIntervalMs: 60_000 });
  try {
    for (let i = 1; i <= 4; i++) e.add(span(i));
    await new Promise((r) => setImmediate(r));
    for (let i = 5; i <= 6; i++) e.add(span(i));
    await e.flush();
    assert.equal(c.spans.length, 6, 'the two spans behind the batch in flight were sent, not left for the timer');
    assert.equal(e.queued, 0);
  } finally {
    await e.close();
    await c.close();
  }
});

test('a stalled collector fills the queue, and then spans are dropped and counted, not held', async () => {
  const c = await startCollector();
  c.stall = true;
  const e = new SpanExporter({ endpoint: c.url, resource: {}, maxQueueSpans: 16, batchSpans: 4, flushIntervalMs: 5, exportTimeoutMs: 60_000 });
  try {
    for (let i = 1; i <= 4; i++) e.add(span(i));
    await eventually(() => assert.equal(c.requests.length, 1), { what: 'the first batch in flight' });
    for (let i = 5; i <= 100; i++) e.add(span(i));
    assert.equal(e.queued, 16, 'the queue holds its limit');
    assert.equal(e.dropped.queue_full, 100 - 4 - 16);
    assert.equal(c.requests.length, 1, 'one request at a time, however full the queue');
    // A span the caller would write piece by piece (the trace layer's) is refused before it is, and counted the same.
    assert.equal(e.beginSpan(), undefined);
    assert.equal(e.dropped.queue_full, 100 - 4 - 16 + 1);
    assert.equal(e.queued, 16);
  } finally {
    c.stall = false;
    await c.close();
    await e.close();
  }
});

test('a stopped collector: each failed batch is dropped and counted, and the queue does not grow', async () => {
  const c = await startCollector();
  const url = c.url;
  await c.close();
  const errors: string[] = [];
  const e = new SpanExporter({ endpoint: url, resource: {}, maxQueueSpans: 64, batchSpans: 8, flushIntervalMs: 5, onError: (r) => errors.push(r) });
  try {
    for (let i = 1; i <= 40; i++) e.add(span(i));
    await eventually(() => assert.equal(e.dropped.export_failed, 40));
    assert.equal(e.queued, 0);
    assert.equal(e.exported, 0);
    assert.match(errors[0]!, /ECONNREFUSED/);
  } finally {
    await e.close();
  }
});

test('an export the collector does not answer in time is given up and counted', async () => {
  const c = await startCollector();
  c.stall = true;
  const e = new SpanExporter({ endpoint: c.url, resource: {}, batchSpans: 2, flushIntervalMs: 60_000, exportTimeoutMs: 50 });
  try {
    e.add(span(1));
    e.add(span(2));
    await eventually(() => assert.equal(e.dropped.export_failed, 2));
  } finally {
    c.stall = false;
    await e.close();
    await c.close();
  }
});

test('head sampling follows the rate with a seeded random; 0 never samples, 1 always', () => {
  const t = new Tracer({ resource: {}, random: seeded(42), defaultEndpoint: 'http://127.0.0.1:1/v1/traces' });
  try {
    t.configure({ samplingRate: 0.1 });
    let n = 0;
    for (let i = 0; i < 10_000; i++) if (t.sample()) n++;
    assert.ok(n > 900 && n < 1100, `${n} of 10000 at 10%`);
    // The same seed samples the same requests.
    const again = new Tracer({ resource: {}, random: seeded(42), defaultEndpoint: 'http://127.0.0.1:1/v1/traces' });
    again.configure({ samplingRate: 0.1 });
    let m = 0;
    for (let i = 0; i < 10_000; i++) if (again.sample()) m++;
    assert.equal(m, n);
    void again.close();
    t.configure({ samplingRate: 0 });
    for (let i = 0; i < 1000; i++) assert.equal(t.sample(), false);
    t.configure({ samplingRate: 1 });
    for (let i = 0; i < 1000; i++) assert.equal(t.sample(), true);
  } finally {
    void t.close();
  }
});

test('without a collector in the snapshot, spans go to the control plane with the proxy’s credentials; to another collector, without', async () => {
  const cp = await startCollector();
  const other = await startCollector();
  const t = new Tracer({ resource: { 'service.name': 'web' }, defaultEndpoint: cp.url, defaultHeaders: { 'trellis-credential': 'secret' } });
  try {
    t.configure({ samplingRate: 1 });
    t.record(span(1));
    await t.flush();
    assert.equal(cp.spans.length, 1);
    assert.equal(cp.requests[0]!['trellis-credential'], 'secret');
    t.configure({ samplingRate: 1, endpoint: other.url });
    t.record(span(2));
    await t.flush();
    assert.equal(other.spans.length, 1);
    assert.equal(other.requests[0]!['trellis-credential'], undefined);
    t.configure(undefined);
    assert.equal(t.enabled, false);
  } finally {
    await t.close();
    await cp.close();
    await other.close();
  }
});
