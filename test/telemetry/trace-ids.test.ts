// Trace and span ids (ids.ts): 16 and 8 random bytes as lower-case hex, drawn from a
// pool filled from the CSPRNG and turned into hex once per fill. They must stay unique
// across refills, and never be all zero (invalid in W3C and B3) whatever the pool holds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drainIdPoolForTest, newSpanId, newTraceId } from '../../src/telemetry/tracing/ids.js';
import { newUnsampledContextLine } from '../../src/telemetry/tracing/trace-context.js';

test('ids are 32 and 16 lower-case hex digits, unique across several refills of the pool', () => {
  const seen = new Set<string>();
  // 1,000 trace ids and span ids use 24 KB: the 4 KB pool refills six times.
  for (let i = 0; i < 1000; i++) {
    const t = newTraceId();
    const s = newSpanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s, /^[0-9a-f]{16}$/);
    seen.add(t);
    seen.add(s);
  }
  assert.equal(seen.size, 2000);
});

test('an id is the hex of the pool’s next bytes, and all-zero bytes are skipped, never an id', () => {
  drainIdPoolForTest((pool) => {
    pool.fill(0, 0, 16); // a trace id's worth of zeros first
    pool.fill(0xab, 16, 32);
    pool.fill(0, 32, 40); // then a span id's worth
    pool.fill(0x01, 40, 48);
  });
  assert.equal(newTraceId(), 'ab'.repeat(16));
  assert.equal(newSpanId(), '01'.repeat(8));
  // A pool of nothing but zeros: every id comes from the next fill, still valid.
  drainIdPoolForTest((pool) => pool.fill(0));
  const t = newTraceId();
  assert.match(t, /^[0-9a-f]{32}$/);
  assert.notEqual(t, '0'.repeat(32));
  assert.notEqual(newSpanId(), '0'.repeat(16));
});

test('after the pool is used up, ids come from fresh random bytes', () => {
  const before = new Set<string>();
  for (let i = 0; i < 300; i++) before.add(newSpanId());
  drainIdPoolForTest();
  const after = newSpanId();
  assert.match(after, /^[0-9a-f]{16}$/);
  assert.ok(!before.has(after));
});

test('a new unsampled trace’s line is a traceparent of fresh ids, never all zero, unchanged by the next one', () => {
  const first = newUnsampledContextLine();
  assert.match(first, /^traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-00\r\n$/);
  const copy = `${first}`;
  const seen = new Set<string>([first.slice(16, 48), first.slice(49, 65)]);
  for (let i = 0; i < 500; i++) {
    const line = newUnsampledContextLine();
    assert.match(line, /^traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-00\r\n$/);
    seen.add(line.slice(16, 48));
    seen.add(line.slice(49, 65));
  }
  assert.equal(first, copy);
  assert.equal(seen.size, 1002);
  drainIdPoolForTest((pool) => {
    pool.fill(0, 0, 16);
    pool.fill(0xab, 16, 32);
    pool.fill(0, 32, 40);
    pool.fill(0x01, 40, 48);
  });
  assert.equal(newUnsampledContextLine(), `traceparent: 00-${'ab'.repeat(16)}-${'01'.repeat(8)}-00\r\n`);
});
