// The control plane exports how long its event loop was blocked (issue 17): a block
// shows in the next scrape's max, and each scrape starts afresh.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlMetrics } from '../../src/control/control-metrics.js';

function maxDelay(text: string): number {
  const m = /^trellis_control_event_loop_delay_seconds\{quantile="1"\} (\S+)$/m.exec(text);
  assert.ok(m, `no max in:\n${text}`);
  return Number(m[1]);
}

test('a blocked event loop shows in the next scrape, and the scrape after a quiet spell is low again', async () => {
  const metrics = new ControlMetrics();
  try {
    await new Promise((r) => setTimeout(r, 50));
    const end = Date.now() + 300;
    while (Date.now() < end) {
      // blocked, as a long compile would block it
    }
    // A scrape is served by the loop after the block, behind the monitor's overdue sample
    // (timers run before sockets are polled); a timer due after that sample stands for it.
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(maxDelay(await metrics.text()) >= 0.25, 'the 300 ms block is the max');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(maxDelay(await metrics.text()) < 0.25, 'reset by the scrape before');
  } finally {
    metrics.close();
  }
});
