// The split of a global rate limit into per-replica quotas (src/control/distribute/rate-quotas.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RateQuotaMessage } from '../../src/api/protocol.js';
import { allocate, RateQuotas } from '../../src/control/distribute/rate-quotas.js';
import { ManualClock } from '../helpers/manual-clock.js';

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

test('a replica asking little gets it with headroom, the busy one the rest of the rate (what the quiet ones use)', () => {
  const q = allocate(100, [500, 10, 5]);
  assert.equal(q[0], 85);
  assert.equal(q[1], 12);
  assert.equal(q[2], 6);
  assert.ok(sum(q) <= 100 + 0.2 * 15 + 1e-9, "over the rate by the quiet replicas' headroom at most");
  assert.deepEqual(allocate(90, [undefined, undefined, undefined]), [30, 30, 30], 'unknown demand: equal shares');
  const idle = allocate(100, [10, 0]);
  assert.ok(Math.abs(sum(idle) - 100) < 1e-9 && idle[0]! > 12 && idle[1]! > 0, 'what nobody asks for is spread evenly');
  assert.deepEqual(allocate(100, []), []);
});

test('replicas joining and leaving get their quotas at once; demand reports rebalance them', () => {
  const clock = new ManualClock();
  const sent = new Map<string, RateQuotaMessage>();
  const quotas = new RateQuotas({ limitsOf: () => [{ id: 'default/p/global', requestsPerSecond: 60, burst: 30 }], clock });
  const member = (id: string) => ({ id, service: 'api', send: (m: RateQuotaMessage) => sent.set(id, m) });
  const rate = (id: string): number => sent.get(id)!.quotas[0]!.requestsPerSecond;
  quotas.join(member('a'));
  assert.equal(rate('a'), 60);
  quotas.join(member('b'));
  quotas.join(member('c'));
  assert.deepEqual([rate('a'), rate('b'), rate('c')], [20, 20, 20]);
  assert.equal(sent.get('a')!.quotas[0]!.burst, 10, 'the burst is split as the rate is');
  clock.advance(1000);
  quotas.report('a', { type: 'rate-demand', intervalMs: 1000, limits: [{ id: 'default/p/global', requests: 300 }] });
  quotas.report('b', { type: 'rate-demand', intervalMs: 1000, limits: [{ id: 'default/p/global', requests: 5 }] });
  quotas.report('c', { type: 'rate-demand', intervalMs: 1000, limits: [{ id: 'default/p/global', requests: 10 }] });
  quotas.rebalanceAll();
  assert.deepEqual([rate('a'), rate('b'), rate('c')], [60 - 5 - 10, 6, 12]);
  quotas.leave('a', 'api');
  assert.ok(rate('b') + rate('c') >= 60 - 1e-9, "a's share went to the replicas left");
  // Reports older than three intervals no longer count.
  clock.advance(9000);
  quotas.rebalanceAll();
  assert.deepEqual([rate('b'), rate('c')], [30, 30]);
});
