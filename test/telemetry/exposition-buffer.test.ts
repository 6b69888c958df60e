// The buffer a scrape's exposition is written into (exposition-buffer.ts): what comes out
// is exactly the text written, across growth and multi-byte characters, and the bytes a
// scrape lent its response are not written over until given back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExpositionBuffer } from '../../src/telemetry/exposition-buffer.js';
import { ProxyMetrics } from '../../src/telemetry/metrics.js';

test('the bytes taken are the UTF-8 of the pieces written, across many growths', () => {
  const out = new ExpositionBuffer(8);
  const pieces: string[] = [];
  for (let i = 0; i < 500; i++) pieces.push(i % 7 === 0 ? `route="é✓😀${i}"\n` : `x{le="${i}"} ${i * 0.5}\n`);
  for (const p of pieces) out.write(p);
  assert.deepEqual(out.take(), Buffer.from(pieces.join(''), 'utf8'));
  assert.equal(out.take().length, 0, 'a take empties the buffer');
});

test('bytes still lent to a response are never written over; once released, the next scrape reuses them', () => {
  const out = new ExpositionBuffer(64);
  out.write('first scrape\n');
  const first = out.take();
  out.write('second scrape, while the first is still being sent\n');
  const second = out.take();
  assert.equal(first.toString(), 'first scrape\n', 'not written over while lent');
  assert.equal(second.toString(), 'second scrape, while the first is still being sent\n');
  assert.notEqual(second.buffer === first.buffer && second.byteOffset === first.byteOffset, true);
  out.release(first); // a release of bytes no longer the buffer's own changes nothing
  out.write('third\n');
  const third = out.take();
  assert.equal(second.toString(), 'second scrape, while the first is still being sent\n', 'still lent: not written over');
  out.release(third);
  out.write('fourth\n');
  const fourth = out.take();
  assert.equal(fourth.buffer, third.buffer, 'released: the same memory is written again');
  assert.equal(fourth.byteOffset, third.byteOffset);
  assert.equal(fourth.toString(), 'fourth\n');
});

test('a proxy whose names hold any character exposes them as UTF-8, in both forms, scrape after scrape', async () => {
  const m = new ProxyMetrics({ service: 'wéb', id: 'wéb-0' });
  m.observeHttp({ direction: 'outbound', source: 'wéb', destination: 'ápi', destinationVersion: 'v1', route: 'default/r✓/rule/0' }, 200, 0.001, '');
  for (const om of [false, true, false]) {
    const bytes = await m.exposition(om);
    const text = bytes.toString('utf8');
    assert.equal(Buffer.byteLength(text), bytes.length);
    assert.match(text, /trellis_http_requests_total\{[^}]*route="default\/r✓\/rule\/0"[^}]*\} 1\n/);
    assert.match(text, /proxy_service="wéb"/);
    assert.equal(text.endsWith('# EOF\n'), om);
  }
});
