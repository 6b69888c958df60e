// The receiver's bodies wait as bytes and are decoded when traces are read
// (src/control/traces/pending-bodies.ts): a read sees what decoding on arrival would
// have kept, each body is decoded once, malformed bodies are counted, the waiting bytes
// are bounded (the oldest dropped undecoded), and decoding goes in slices.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BODY_OVERHEAD, CHUNK_OVERHEAD, PendingBodies, precheckBody } from '../../src/control/traces/pending-bodies.js';
import { TraceStore } from '../../src/control/traces/trace-store.js';

const TRACE_A = 'a'.repeat(32);
/** What one body of one chunk counts against the bound. */
const COST = BODY_OVERHEAD + CHUNK_OVERHEAD;

/** Pushes `body` as one chunk, as the HTTP server would give a small one. */
function push(pending: PendingBodies, body: Buffer): void {
  pending.push([body], body.length);
}
const TRACE_B = 'b'.repeat(32);

function body(service: string, spans: { traceId: string; spanId: string; parentSpanId?: string; name?: string }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
          scopeSpans: [
            { spans: spans.map((s) => ({ kind: 2, name: s.name ?? 'x', startTimeUnixNano: '1000', endTimeUnixNano: '2000', parentSpanId: '', ...s })) },
          ],
        },
      ],
    }),
  );
}

/** A scheduler the test turns by hand: each call of `turn` runs what was put off. */
function manual(): { schedule: (f: () => void) => void; turn: () => number } {
  let queue: (() => void)[] = [];
  return {
    schedule: (f) => void queue.push(f),
    turn: () => {
      const q = queue;
      queue = [];
      for (const f of q) f();
      return q.length;
    },
  };
}

test('a body waits undecoded until a read, then its trace is found, joined with spans from other sources', async () => {
  const store = new TraceStore();
  const pending = new PendingBodies(store);
  push(pending, body('frontend', [{ traceId: TRACE_A, spanId: 'a000000000000001', name: 'GET /' }]));
  push(pending, body('backend', [{ traceId: TRACE_A, spanId: 'a000000000000002', parentSpanId: 'a000000000000001', name: 'GET /api' }]));
  push(pending, body('postgres-app', [{ traceId: TRACE_A, spanId: 'a000000000000003', parentSpanId: 'a000000000000002', name: 'SELECT' }]));
  assert.equal(store.size, 0, 'nothing decoded on arrival');
  assert.equal(pending.length, 3);
  await pending.settle();
  assert.equal(pending.length, 0);
  assert.equal(pending.bytes, 0);
  const t = store.get(TRACE_A)!;
  assert.deepEqual(t.spans.map((s) => [s.service, s.name]).sort(), [
    ['backend', 'GET /api'],
    ['frontend', 'GET /'],
    ['postgres-app', 'SELECT'],
  ]);
  assert.deepEqual(store.list()[0]!.services, ['backend', 'frontend', 'postgres-app']);
  assert.equal(pending.counts.decodedBodies, 3);
  assert.equal(pending.counts.spansAccepted, 3);
  // Each body once: a second read decodes nothing again.
  await pending.settle();
  assert.equal(pending.counts.decodedBodies, 3);
  assert.equal(store.get(TRACE_A)!.spans.length, 3);
});

test('decoded lazily, in arrival order, the store keeps exactly what decoding each body on arrival keeps (its trace eviction too)', async () => {
  const bodies: Buffer[] = [];
  for (let i = 1; i <= 9; i++) {
    const traceId = String(i % 5)
      .repeat(32)
      .replace(/^0+$/, 'f'.repeat(32));
    bodies.push(body(`s${i % 3}`, [{ traceId, spanId: `c00000000000000${i}` }]));
  }
  const eager = new TraceStore({ maxTraces: 3 });
  for (const b of bodies) eager.ingest(JSON.parse(b.toString('utf8')));
  const lazy = new TraceStore({ maxTraces: 3 });
  const pending = new PendingBodies(lazy);
  for (const b of bodies) push(pending, b);
  await pending.settle();
  assert.deepEqual(lazy.list(), eager.list());
  assert.equal(lazy.evicted, eager.evicted);
  for (const s of eager.list()) assert.deepEqual(lazy.get(s.traceId), eager.get(s.traceId));
});

test('a malformed body is counted when decoded, with its reason, and the bodies after it are still taken in', async () => {
  const store = new TraceStore();
  const pending = new PendingBodies(store);
  push(pending, Buffer.from('{"resourceSpans": [}'));
  push(pending, Buffer.from('{"resourceSpans": 5}'));
  push(
    pending,
    body('web', [
      { traceId: TRACE_B, spanId: 'b000000000000001' },
      { traceId: TRACE_B, spanId: 'zz' },
    ]),
  );
  push(pending, Buffer.from('{"deep": '.repeat(100_000)));
  await pending.settle();
  const c = pending.counts;
  assert.equal(c.rejectedBodies, 3);
  assert.equal(c.decodedBodies, 1);
  assert.equal(c.spansAccepted, 1);
  assert.equal(c.spansRejected, 1);
  assert.equal(c.lastProblem, 'a body is not JSON');
  assert.equal(store.get(TRACE_B)!.spans.length, 1);
});

test('the waiting bytes are bounded: the oldest bodies are dropped undecoded (counted); the newest is kept whatever its size', async () => {
  const store = new TraceStore();
  const one = body('s', [{ traceId: TRACE_A, spanId: 'd000000000000001' }]);
  const cost = one.length + COST;
  const pending = new PendingBodies(store, { maxPendingBytes: cost * 3 });
  for (let i = 1; i <= 5; i++) push(pending, body('s', [{ traceId: String(i).repeat(32), spanId: 'd000000000000001' }]));
  assert.equal(pending.length, 3);
  assert.ok(pending.bytes <= cost * 3);
  assert.equal(pending.counts.skippedBodies, 2);
  await pending.settle();
  assert.deepEqual(
    store
      .list()
      .map((t) => t.traceId[0])
      .sort(),
    ['3', '4', '5'],
  );
  // Many tiny bodies count their overhead: they cannot hold more than the bound says.
  for (let i = 0; i < 100; i++) push(pending, Buffer.from('{}'));
  assert.ok(pending.length <= Math.floor((cost * 3) / (2 + COST)));
  // A body larger than the bound: everything older goes, it stays.
  const big = body('s', [{ traceId: TRACE_B, spanId: 'd000000000000002', name: 'n'.repeat(cost * 4) }]);
  push(pending, big);
  assert.equal(pending.length, 1);
  await pending.settle();
  assert.equal(store.get(TRACE_B)!.spans.length, 1);
});

test('a read decodes in slices, one turn of the loop at a time, and waits only for the bodies that came before it', async () => {
  const store = new TraceStore();
  const m = manual();
  const pending = new PendingBodies(store, {}, m.schedule);
  // Each about 100 KB: a slice (about 256 KB) takes three.
  const spans = Array.from({ length: 200 }, (_, i) => ({ traceId: TRACE_A, spanId: `e${String(i + 1).padStart(15, '0')}`, name: 'n'.repeat(400) }));
  for (let i = 0; i < 8; i++) push(pending, body(`s${i}`, spans));
  let first = false;
  let second = false;
  const a = pending.settle().then(() => {
    first = true;
  });
  const b = pending.settle().then(() => {
    second = true;
  });
  push(pending, body('late', [{ traceId: TRACE_B, spanId: 'f000000000000001' }]));
  assert.equal(store.size, 0);
  let turns = 0;
  while (!first) {
    assert.equal(m.turn(), 1, 'one slice scheduled at a time');
    turns++;
    await Promise.resolve();
  }
  await a;
  await b;
  assert.ok(second, 'the concurrent read was answered by the same work');
  assert.ok(turns >= 3, `decoded in ${turns} turns`);
  assert.equal(pending.counts.decodedBodies, 8);
  assert.equal(pending.length, 1, 'the body after the reads still waits');
  assert.equal(store.get(TRACE_B), undefined);
  assert.equal(m.turn(), 0, 'nothing more scheduled');
  const c = pending.settle();
  m.turn();
  await c;
  assert.equal(store.get(TRACE_B)!.spans.length, 1);
});

test('a body dropped by the bound while a read waits still lets the read finish', async () => {
  const store = new TraceStore();
  const m = manual();
  const one = body('s', [{ traceId: TRACE_A, spanId: 'a000000000000009' }]);
  const pending = new PendingBodies(store, { maxPendingBytes: one.length + COST }, m.schedule);
  push(pending, one);
  let done = false;
  const read = pending.settle().then(() => {
    done = true;
  });
  push(pending, body('s', [{ traceId: TRACE_B, spanId: 'a000000000000009' }]));
  assert.equal(pending.counts.skippedBodies, 1);
  m.turn();
  await read;
  assert.ok(done);
  assert.equal(store.get(TRACE_A), undefined);
});

test('a body kept as several chunks is decoded whole; a chunk that is a view of larger memory is copied, not held with it', async () => {
  const store = new TraceStore();
  const pending = new PendingBodies(store);
  const b = body('web', [{ traceId: TRACE_A, spanId: 'a00000000000000a' }]);
  const big = Buffer.alloc(64 * 1024);
  b.copy(big, 100);
  const view = big.subarray(100 + 10, 100 + b.length);
  pending.push([Buffer.from(b.subarray(0, 10)), view], b.length);
  assert.equal(pending.bytes, b.length + BODY_OVERHEAD + 2 * CHUNK_OVERHEAD);
  big.fill(0); // the queue holds its own copy of the view's bytes
  await pending.settle();
  assert.equal(store.get(TRACE_A)!.spans[0]!.spanId, 'a00000000000000a');
});

test('what the receiver refuses on arrival: nothing but whitespace, or not a JSON object from first byte to last', () => {
  const check = (...chunks: (string | number[])[]): string => precheckBody(chunks.map((c) => Buffer.from(c as string)));
  assert.equal(check(''), 'the body is empty');
  assert.equal(check(), 'the body is empty');
  assert.equal(check(' \r\n\t', '  '), 'the body is empty');
  assert.equal(check('[]'), 'the body is not a JSON object');
  assert.equal(check('{"resourceSpans": ['), 'the body is not a JSON object');
  assert.equal(check([0x0a, 0x01, 0x7d]), 'the body is not a JSON object');
  assert.equal(check('{'), 'the body is not a JSON object');
  assert.equal(check(' {}\n'), '');
  assert.equal(check('{"resourceSpans":[]}'), '');
  // The first and last bytes past whitespace, whichever chunks they are in.
  assert.equal(check(' ', '', '{"resource', 'Spans":[]}', ' \n', ''), '');
  assert.equal(check(' ', '', '{"resource', 'Spans":[]', ' \n', ''), 'the body is not a JSON object');
});
