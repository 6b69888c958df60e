// The sweep's search on its own, with a fake step runner: exponential up, then
// bisection between the last good and the first bad rate until within the precision;
// halving down when the first rate fails; --max-rate and --max-steps are bounds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeStep, nextStep, runSweep, type StepMeasure, type SweepOptions } from '../../src/loadgen/sweep.js';

const slo = { p99Ms: 100, minSuccess: 0.999, minAchieved: 0.95 };
const base: SweepOptions = { startRate: 100, maxRate: 100_000, precision: 0.1, maxSteps: 12, minRate: 2, slo };

/** A target that meets the SLO up to `capacity` req/s and misses it (p99 1 s) above. */
function measure(rate: number, o: { capacity: number; errorsAbove?: boolean; achievedAbove?: number }): StepMeasure {
  const over = rate > o.capacity;
  const scheduled = 1000;
  const errors = over && o.errorsAbove ? 100 : 0;
  const p99 = over && !o.errorsAbove && o.achievedAbove === undefined ? 1_000_000 : 5_000;
  return {
    rate,
    scheduled,
    completed: scheduled - errors,
    interrupted: false,
    achievedRps: over && o.achievedAbove !== undefined ? rate * o.achievedAbove : rate,
    errors: { total: errors, connect: 0, reset: 0, timeout: errors, protocol: 0, status: {} },
    latencyUs: { count: scheduled - errors, p50: 1000, p90: 2000, p99, p999: p99, max: p99, mean: 1000 },
  };
}

async function sweep(o: Partial<SweepOptions>, target: Parameters<typeof measure>[1]) {
  const asked: number[] = [];
  const r = await runSweep({ ...base, ...o }, async (rate) => {
    asked.push(rate);
    return measure(rate, target);
  });
  return { r, asked };
}

describe('rate sweep search', () => {
  it('doubles until a step fails, then bisects until within the precision', async () => {
    const { r, asked } = await sweep({}, { capacity: 1000 });
    assert.deepEqual(asked.slice(0, 5), [100, 200, 400, 800, 1600]);
    assert.deepEqual(asked.slice(5), [1200, 1000, 1100]);
    assert.equal(r.stoppedBy, 'precision');
    assert.equal(r.saturation, 1000);
    assert.equal(r.firstBad, 1100);
    assert.ok(r.firstBad! <= r.saturation! * 1.1);
    assert.deepEqual(
      r.steps.map((s) => s.phase),
      ['exponential', 'exponential', 'exponential', 'exponential', 'exponential', 'bisect', 'bisect', 'bisect'],
    );
  });

  it('brackets the capacity ever closer as the precision tightens', async () => {
    for (const capacity of [150, 437, 3000, 77_777]) {
      for (const precision of [0.2, 0.1, 0.02]) {
        const { r } = await sweep({ precision, maxSteps: 100 }, { capacity });
        assert.equal(r.stoppedBy, 'precision', `capacity ${capacity}`);
        assert.ok(r.saturation! <= capacity && r.firstBad! > capacity, `capacity ${capacity}: ${r.saturation}..${r.firstBad}`);
        assert.ok(r.firstBad! <= r.saturation! * (1 + precision) + 1, `within ${precision}: ${r.saturation}..${r.firstBad}`);
      }
    }
  });

  it('counts errors and a rate the target cannot keep up with as failing the SLO', async () => {
    const failing = await sweep({}, { capacity: 500, errorsAbove: true });
    assert.deepEqual([failing.r.saturation, failing.r.firstBad], [500, 550]);
    const behind = await sweep({}, { capacity: 500, achievedAbove: 0.9 });
    assert.equal(behind.r.steps[3]!.ok, false);
    assert.match(behind.r.steps[3]!.reasons.join(), /achieved 90% of asked/);
    const v = judgeStep(slo, measure(1000, { capacity: 500, errorsAbove: true }));
    assert.deepEqual(v, { ok: false, success: 0.9, reasons: ['success 90.0% < 99.9%'] });
  });

  it('stops at --max-rate when every step meets the SLO, never asking for more', async () => {
    const { r, asked } = await sweep({ maxRate: 1000 }, { capacity: Infinity });
    assert.deepEqual(asked, [100, 200, 400, 800, 1000]);
    assert.equal(r.stoppedBy, 'max-rate');
    assert.equal(r.saturation, 1000);
    assert.equal(r.firstBad, undefined);
  });

  it('stops after --max-steps steps, with the knee bracketed so far', async () => {
    const { r, asked } = await sweep({ maxSteps: 6 }, { capacity: 1000 });
    assert.equal(asked.length, 6);
    assert.equal(r.stoppedBy, 'max-steps');
    assert.equal(r.saturation, 800);
    assert.equal(r.firstBad, 1200);
  });

  it('halves down when the start rate already fails twice, then bisects', async () => {
    const { r, asked } = await sweep({}, { capacity: 30 });
    assert.deepEqual(asked.slice(0, 4), [100, 100, 50, 25]);
    assert.deepEqual(
      r.steps.slice(0, 4).map((s) => s.phase),
      ['exponential', 'repeat', 'descent', 'descent'],
    );
    assert.equal(r.stoppedBy, 'precision');
    assert.ok(r.saturation! <= 30 && r.firstBad! > 30);
  });

  it('runs a first step that missed cold once more, and goes on up when the repeat meets the SLO', async () => {
    // The first run misses (a cold start); the same rate run again passes.
    const asked: number[] = [];
    const r = await runSweep({ ...base, maxSteps: 5 }, async (rate) => {
      asked.push(rate);
      return measure(rate, { capacity: asked.length === 1 ? 0 : 1000 });
    });
    assert.deepEqual(asked, [100, 100, 200, 400, 800]);
    assert.deepEqual(
      r.steps.map((s) => [s.phase, s.ok]),
      [
        ['exponential', false],
        ['repeat', true],
        ['exponential', true],
        ['exponential', true],
        ['exponential', true],
      ],
    );
    assert.equal(r.saturation, 800);
    assert.equal(r.firstBad, undefined, 'the cold miss is not the knee');
    // only the very first step is repeated
    assert.deepEqual(nextStep(base, { bad: 100, steps: 1 }), { rate: 100, phase: 'repeat' });
    assert.deepEqual(nextStep(base, { bad: 100, steps: 2 }), { rate: 50, phase: 'descent' });
    assert.deepEqual(nextStep(base, { good: 100, bad: 200, steps: 2 }), { rate: 150, phase: 'bisect' });
    assert.deepEqual(nextStep({ ...base, maxSteps: 1 }, { bad: 100, steps: 1 }), { done: 'max-steps' });
  });

  it('gives up below the lowest rate when nothing meets the SLO', async () => {
    const { r, asked } = await sweep({ minRate: 10 }, { capacity: 0 });
    assert.deepEqual(
      asked,
      [100, 100, 50, 25, 12.5].map((x) => (x >= 10 ? Math.round(x) : x)),
    );
    assert.equal(r.stoppedBy, 'min-rate');
    assert.equal(r.saturation, undefined);
  });

  it('is a pure function of the bracket', () => {
    assert.deepEqual(nextStep(base, { steps: 0 }), { rate: 100, phase: 'exponential' });
    assert.deepEqual(nextStep(base, { good: 400, steps: 3 }), { rate: 800, phase: 'exponential' });
    assert.deepEqual(nextStep(base, { good: 400, bad: 800, steps: 4 }), { rate: 600, phase: 'bisect' });
    assert.deepEqual(nextStep(base, { good: 1000, bad: 1100, steps: 4 }), { done: 'precision' });
    assert.deepEqual(nextStep({ ...base, startRate: 500, maxRate: 300 }, { steps: 0 }), { rate: 300, phase: 'exponential' });
    assert.deepEqual(nextStep(base, { good: 400, bad: 800, steps: 12 }), { done: 'max-steps' });
  });

  it('stops when interrupted, keeping the steps done', async () => {
    const ac = new AbortController();
    const r = await runSweep(
      base,
      async (rate) => {
        if (rate >= 400) ac.abort();
        return { ...measure(rate, { capacity: Infinity }), interrupted: rate >= 400 };
      },
      { signal: ac.signal },
    );
    assert.equal(r.stoppedBy, 'interrupted');
    assert.deepEqual(
      r.steps.map((s) => s.rate),
      [100, 200],
    );
  });
});
