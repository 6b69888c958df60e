// The retry backoff (exponential from the base, capped, with equal jitter) and the
// sweep interval that enforces route timeouts, both as pure functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../src/proxy/resilience/retry.js';
import { sweepIntervalMs } from '../../src/proxy/resilience/timeout.js';
import type { CompiledUpstream } from '../../src/proxy/routing/router.js';

test('the backoff doubles per retry from the base, jittered between half and all of it', () => {
  assert.equal(
    backoffDelay(100, 0, () => 0),
    50,
  );
  assert.equal(
    backoffDelay(100, 0, () => 1),
    100,
  );
  assert.equal(
    backoffDelay(100, 1, () => 0),
    100,
  );
  assert.equal(
    backoffDelay(100, 1, () => 1),
    200,
  );
  assert.equal(
    backoffDelay(100, 2, () => 0.5),
    300,
  );
});

test('the backoff stops growing at ten times the base', () => {
  assert.equal(
    backoffDelay(25, 4, () => 1),
    250,
  );
  assert.equal(
    backoffDelay(25, 9, () => 1),
    250,
  );
  assert.equal(
    backoffDelay(25, 9, () => 0),
    125,
  );
});

function upstream(timeouts: ({ requestMs?: number; backendRequestMs?: number } | undefined)[]): CompiledUpstream {
  return { routes: timeouts.map((t) => ({ timeouts: t })) } as unknown as CompiledUpstream;
}

test('the sweep runs every quarter of the shortest timeout, between 10 and 250 ms', () => {
  assert.equal(sweepIntervalMs([upstream([undefined])]), 250, 'no timeouts: the default sweep');
  assert.equal(sweepIntervalMs([upstream([{ requestMs: 2000 }])]), 250);
  assert.equal(sweepIntervalMs([upstream([{ requestMs: 2000, backendRequestMs: 400 }]), upstream([{ requestMs: 600 }])]), 100);
  assert.equal(sweepIntervalMs([upstream([{ backendRequestMs: 5 }])]), 10);
});
