// The push debounce (issue 17), on a manual clock: a lone change goes out after the quiet
// period, a storm of changes coalesces into one push per max delay, and no change waits
// longer than the max delay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PushDebounce } from '../../src/control/distribute/push-debounce.js';
import { ManualClock } from '../helpers/manual-clock.js';

function setup(quietMs: number, maxDelayMs: number, stormMaxDelayMs = maxDelayMs): { clock: ManualClock; pushes: number[]; debounce: PushDebounce } {
  const clock = new ManualClock();
  const pushes: number[] = [];
  const debounce = new PushDebounce({ quietMs, maxDelayMs, stormMaxDelayMs, clock }, () => pushes.push(clock.now()));
  return { clock, pushes, debounce };
}

test('a lone change is pushed once the quiet period has passed, not before', () => {
  const { clock, pushes, debounce } = setup(20, 1000);
  clock.advance(500);
  debounce.trigger();
  clock.advance(19);
  assert.deepEqual(pushes, []);
  clock.advance(1);
  assert.deepEqual(pushes, [520]);
  clock.advance(5000);
  assert.deepEqual(pushes, [520], 'nothing more without another change');
});

test('changes within the quiet period are pushed together, after the last one is quiet', () => {
  const { clock, pushes, debounce } = setup(20, 1000);
  debounce.trigger();
  clock.advance(10);
  debounce.trigger();
  clock.advance(15);
  debounce.trigger();
  assert.equal(debounce.events, 3);
  clock.advance(19);
  assert.deepEqual(pushes, []);
  clock.advance(1);
  assert.deepEqual(pushes, [45]);
  assert.equal(debounce.pending, false);
});

test('a storm (a change every 5 ms for 3 s) is pushed once per max delay, and no change waits longer than that', () => {
  const { clock, pushes, debounce } = setup(20, 1000);
  const changes: number[] = [];
  for (let t = 0; t < 3000; t += 5) {
    debounce.trigger();
    changes.push(clock.now());
    clock.advance(5);
  }
  clock.advance(100);
  assert.deepEqual(pushes, [1000, 2000, 3000], 'the last change (at 2995 ms) went out with the push at 3000 ms');
  // Every change is carried by the first push at or after it, within the max delay.
  for (const c of changes) {
    const carried = pushes.find((p) => p >= c);
    assert.ok(carried !== undefined && carried - c <= 1000, `the change at ${c} ms waited until ${carried}`);
  }
});

test('in a long storm the max delay doubles from push to push up to the storm max; quiet resets it', () => {
  const { clock, pushes, debounce } = setup(20, 1000, 8000);
  const changes: number[] = [];
  for (let t = 0; t < 20_000; t += 5) {
    debounce.trigger();
    changes.push(clock.now());
    clock.advance(5);
  }
  clock.advance(100);
  // 1 s, then 2, 4 and 8 s after each previous push; the end of the storm goes out after the quiet period.
  assert.deepEqual(pushes, [1000, 3000, 7000, 15000, 20015]);
  for (const c of changes) {
    const carried = pushes.find((p) => p >= c);
    assert.ok(carried !== undefined && carried - c <= 8000, `the change at ${c} ms waited until ${carried}`);
  }
  assert.equal(debounce.maxDelayMs, 1000, 'the quiet period reset the max delay');
  // A lone change after the storm: out after the quiet period.
  debounce.trigger();
  clock.advance(20);
  assert.deepEqual(pushes.at(-1), 20_120);
  // A new storm starts again from 1 s.
  const from = clock.now();
  for (let t = 0; t < 1500; t += 5) {
    debounce.trigger();
    clock.advance(5);
  }
  assert.equal(pushes.at(-1), from + 1000);
});

test('flush pushes a pending change at once; stop drops it', () => {
  const { clock, pushes, debounce } = setup(20, 1000);
  debounce.flush();
  assert.deepEqual(pushes, [], 'nothing pending, nothing pushed');
  debounce.trigger();
  debounce.flush();
  assert.deepEqual(pushes, [0]);
  clock.advance(100);
  assert.deepEqual(pushes, [0], 'the flushed window does not fire again');
  debounce.trigger();
  debounce.stop();
  clock.advance(2000);
  assert.deepEqual(pushes, [0]);
});

test('a max delay shorter than the quiet period is raised to it', () => {
  const { clock, pushes, debounce } = setup(50, 10);
  debounce.trigger();
  clock.advance(49);
  assert.deepEqual(pushes, []);
  clock.advance(1);
  assert.deepEqual(pushes, [50]);
});

test('with the defaults, a slow storm (a change every 50 ms for 3 s, as 2,000 proxies registering) is a handful of pushes, not one per change', () => {
  const clock = new ManualClock();
  const pushes: number[] = [];
  const debounce = new PushDebounce({ clock }, () => pushes.push(clock.now()));
  for (let t = 0; t < 3000; t += 50) {
    debounce.trigger();
    clock.advance(50);
  }
  clock.advance(10_000);
  // A 20 ms quiet period pushed after every one of the 60 changes.
  assert.ok(pushes.length <= 3, `pushes at ${pushes.join(', ')}`);
  assert.equal(debounce.pending, false);
});
