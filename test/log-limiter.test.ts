// The one log limiter every source anyone can trigger shares (src/log-limiter.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLimiter } from '../src/log-limiter.js';

test('writes the first lines of a minute, counts the rest, and says how many before the next minute', () => {
  const lines: string[] = [];
  let now = 0;
  let made = 0;
  const limiter = new LogLimiter({ perMinute: 3, log: (l) => lines.push(l), dropped: (n) => `${n} more`, now: () => now });
  for (let i = 0; i < 10; i++) {
    limiter.write(() => {
      made++;
      return `line ${i}`;
    });
  }
  assert.deepEqual(lines, ['line 0', 'line 1', 'line 2']);
  assert.equal(made, 3, 'a line that is not written is never made');
  now = 60_000;
  limiter.write('next');
  assert.deepEqual(lines.slice(3), ['7 more', 'next']);
  now = 120_000;
  limiter.write('quiet minute');
  assert.deepEqual(lines.slice(5), ['quiet minute'], 'nothing was dropped the minute before: no count line');
});
