// The retry budget with a fake clock: retries are a share of the requests in the
// window plus the minimum rate, spent retries come back as the window slides, and an
// idle destination still gets its minimum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from '../../src/proxy/resilience/retry-budget.js';
import { runModuleScript } from '../helpers/module-child.js';

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

/** Withdraws until refused (bounded); the number granted. */
function drain(b: RetryBudget): number {
  let n = 0;
  while (n < 10_000 && b.withdraw()) n++;
  return n;
}

test('retries are at most the percentage of requests when there is no minimum rate', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 20, windowMs: 10_000, minRetries: 0, minIntervalMs: 1000 }, c.now);
  assert.equal(b.withdraw(), false, 'no requests, no retries');
  for (let i = 0; i < 100; i++) b.deposit();
  assert.equal(drain(b), 20);
});

test('the minimum rate adds count × window / interval retries', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 20, windowMs: 10_000, minRetries: 10, minIntervalMs: 1000 }, c.now);
  assert.equal(drain(b), 100, '10 per second over a 10 s window, with no requests at all');
  for (let i = 0; i < 50; i++) b.deposit();
  assert.equal(drain(b), 10, '20% of 50 more');
});

test('requests and retries leave the budget as the window slides past them', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 50, windowMs: 10_000, minRetries: 0, minIntervalMs: 1000 }, c.now);
  for (let i = 0; i < 10; i++) b.deposit();
  assert.equal(drain(b), 5);
  c.advance(5_000);
  assert.equal(drain(b), 0, 'still inside the window: spent');
  for (let i = 0; i < 10; i++) b.deposit();
  assert.equal(drain(b), 5, '20 requests, 10 retries allowed, 5 already spent');
  c.advance(5_500);
  // The first 10 requests and their 5 retries have left the window.
  assert.equal(drain(b), 0, '10 requests and 5 retries remain in the window');
  c.advance(5_000);
  assert.equal(drain(b), 0, 'an empty window allows nothing without a minimum rate');
  for (let i = 0; i < 4; i++) b.deposit();
  assert.equal(drain(b), 2);
});

test('a long idle gap clears the whole window', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 100, windowMs: 1_000, minRetries: 0, minIntervalMs: 1000 }, c.now);
  for (let i = 0; i < 10; i++) b.deposit();
  assert.equal(drain(b), 10);
  c.advance(60_000);
  assert.equal(drain(b), 0);
  b.deposit();
  assert.equal(drain(b), 1);
});

test('a budget reports whether it was made from the same settings', () => {
  const cfg = { percent: 20, windowMs: 10_000, minRetries: 10, minIntervalMs: 1000 };
  const b = new RetryBudget(cfg);
  assert.equal(b.sameAs({ ...cfg }), true);
  assert.equal(b.sameAs({ ...cfg, percent: 30 }), false);
});

// A retry waiting out its backoff when its request ends (a timeout, a client gone) or its
// proxy stops must not keep the process alive for the rest of the backoff (as the fault
// layer's delay once did). An hour's backoff here: the child exits on its own, or is killed at 20 s.
test('a pending retry backoff does not keep the process alive', async () => {
  const retry = new URL('../../src/proxy/resilience/retry.js', import.meta.url).href;
  const budget = new URL('../../src/proxy/resilience/retry-budget.js', import.meta.url).href;
  const out = await runModuleScript<{ scheduled: boolean; retried: string }>(
    `import { RetryState } from ${JSON.stringify(retry)};
     import { RetryBudget } from ${JSON.stringify(budget)};
     let retried = '';
     const policy = { codes: [503], attempts: 1, backoffMs: 3_600_000, nonIdempotent: false, maxBodyBytes: 65536 };
     const state = new RetryState(policy, new RetryBudget({ percent: 100, windowMs: 10_000, minRetries: 10, minIntervalMs: 1000 }), () => {}, { retried: (_d, _r, reason) => (retried = reason), budgetExhausted: () => {} });
     const ex = { requestBodyDone: true, responseStarted: false, finished: false, client: { socket: { destroyed: false } }, deadline: 0, service: 'api', route: { name: 'default/api/r' }, attempts: 1, status: 503 };
     const scheduled = state.again(ex, 503);
     console.log(JSON.stringify({ scheduled, retried }));`,
    [],
    process.cwd(),
    20_000,
  );
  assert.deepEqual(out, { scheduled: true, retried: '503' });
});
