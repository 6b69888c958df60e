// Passive outlier detection on a fake clock: 5 consecutive 5xx eject an endpoint for
// the base time; ejections grow with repeats up to the cap and are forgiven over time;
// gateway failures, success rate and failure percentage each eject; at most 10% of
// endpoints are out at once, but always at least one may be.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutlierDetector, outcomeOf, type OutlierConfig } from '../../src/proxy/resilience/outlier-detector.js';

function detector(ids: string[], config: Partial<OutlierConfig> = {}): { d: OutlierDetector; clock: { now: number }; log: string[] } {
  const clock = { now: 0 };
  const d = new OutlierDetector(config, () => clock.now);
  const log: string[] = [];
  d.onChange = (id, ejected, reason) => log.push(`${id} ${ejected ? `out (${reason})` : 'back'}`);
  d.setEndpoints(ids);
  return { d, clock, log };
}

describe('outlier detection', () => {
  it('classifies answers: 502/503/504 and no answer are gateway errors, other 5xx server errors', () => {
    assert.deepEqual([200, 404, 429, 500, 501, 502, 503, 504, 0].map(outcomeOf), [
      'success',
      'success',
      'success',
      'server-error',
      'server-error',
      'gateway-error',
      'gateway-error',
      'gateway-error',
      'gateway-error',
    ]);
  });

  it('ejects after 5 consecutive 5xx, not 4, and brings the endpoint back after the 30 s base time', () => {
    const { d, clock, log } = detector(['a', 'b', 'c']);
    for (let i = 0; i < 4; i++) d.report('a', 'server-error');
    d.report('a', 'success'); // a success breaks the run
    for (let i = 0; i < 4; i++) d.report('a', 'server-error');
    assert.equal(d.isEjected('a'), false);
    d.report('a', 'server-error');
    assert.equal(d.isEjected('a'), true);
    assert.deepEqual(log, ['a out (consecutive-5xx)']);
    assert.equal(d.view().find((h) => h.id === 'a')!.reason, 'consecutive-5xx');
    clock.now = 29_999;
    assert.equal(d.isEjected('a'), true);
    clock.now = 30_000; // the interval that ends the ejection runs at 30 s (every 10 s)
    assert.equal(d.isEjected('a'), false);
    assert.deepEqual(log, ['a out (consecutive-5xx)', 'a back']);
  });

  it('ejects longer each time (base × times ejected, capped) and forgives one ejection per interval in rotation', () => {
    const { d, clock } = detector(['a', 'b'], { maxEjectionTimeMs: 60_000 });
    const ejectAndMeasure = (): number => {
      for (let i = 0; i < 5; i++) d.report('a', 'server-error');
      assert.equal(d.isEjected('a'), true);
      return d.view().find((h) => h.id === 'a')!.ejectedForMs;
    };
    assert.equal(ejectAndMeasure(), 30_000);
    clock.now += 30_000;
    assert.equal(d.isEjected('a'), false);
    assert.equal(ejectAndMeasure(), 60_000, 'second time: 2 × base');
    clock.now += 60_000;
    assert.equal(d.isEjected('a'), false);
    assert.equal(ejectAndMeasure(), 60_000, 'third time: capped at the max');
    clock.now += 60_000;
    d.isEjected('a'); // the interval returns it
    // Three intervals in rotation forgive the three ejections.
    for (let i = 0; i < 3; i++) {
      clock.now += 10_000;
      d.isEjected('a');
    }
    assert.equal(ejectAndMeasure(), 30_000, 'forgiven: back to the base time');
  });

  it('ejects on 5 consecutive gateway failures, which a plain 500 interrupts', () => {
    const { d } = detector(['a', 'b'], { consecutive5xx: 100 });
    for (let i = 0; i < 4; i++) d.report('a', 'gateway-error');
    d.report('a', 'server-error');
    for (let i = 0; i < 4; i++) d.report('a', 'gateway-error');
    assert.equal(d.isEjected('a'), false);
    d.report('a', 'gateway-error');
    assert.equal(d.isEjected('a'), true);
    assert.equal(d.view().find((h) => h.id === 'a')!.reason, 'consecutive-gateway-failure');
  });

  it('ejects by success rate an endpoint far below the others, when enough endpoints have enough requests', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const { d, clock } = detector(ids, { consecutive5xx: 1000, consecutiveGatewayFailure: 1000, maxEjectionPercent: 50 });
    for (const id of ids) {
      for (let i = 0; i < 200; i++) d.report(id, id === 'f' && i % 2 === 0 ? 'server-error' : 'success');
    }
    assert.equal(d.isEjected('f'), false, 'judged only at the interval');
    clock.now = 10_000;
    assert.equal(d.isEjected('f'), true);
    assert.equal(d.view().find((h) => h.id === 'f')!.reason, 'success-rate');
    for (const id of ids.slice(0, 5)) assert.equal(d.isEjected(id), false);

    // Too few endpoints with enough requests: no judgement.
    const few = detector(['a', 'b', 'c'], { consecutive5xx: 1000 });
    for (const id of ['a', 'b', 'c']) for (let i = 0; i < 200; i++) few.d.report(id, id === 'c' ? 'server-error' : 'success');
    few.clock.now = 10_000;
    assert.equal(few.d.isEjected('c'), false);
  });

  it('ejects by failure percentage when turned on', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const { d, clock } = detector(ids, {
      consecutive5xx: 1000,
      consecutiveGatewayFailure: 1000,
      failurePercentageThreshold: 85,
      maxEjectionPercent: 100,
      successRateMinimumHosts: 100,
    });
    for (const id of ids) for (let i = 0; i < 60; i++) d.report(id, id === 'e' && i % 10 !== 0 ? 'server-error' : 'success');
    clock.now = 10_000;
    assert.equal(d.isEjected('e'), true);
    assert.equal(d.view().find((h) => h.id === 'e')!.reason, 'failure-percentage');
  });

  it('ejects at most 10% of endpoints at once, but at least one', () => {
    const { d } = detector(['a', 'b', 'c']);
    for (const id of ['a', 'b']) for (let i = 0; i < 5; i++) d.report(id, 'server-error');
    assert.equal(d.isEjected('a'), true, 'one may always be ejected');
    assert.equal(d.isEjected('b'), false, '10% of 3 rounds to 0, so only the one');
    const many = detector(Array.from({ length: 20 }, (_, i) => `e${i}`));
    for (let k = 0; k < 5; k++) for (let i = 0; i < 5; i++) many.d.report(`e${k}`, 'gateway-error');
    assert.equal(many.d.view().filter((h) => h.ejected).length, 2, '10% of 20');
  });

  it('forgets endpoints that left and starts new ones clean', () => {
    const { d } = detector(['a', 'b']);
    for (let i = 0; i < 5; i++) d.report('a', 'server-error');
    d.setEndpoints(['b', 'c']);
    assert.equal(d.isEjected('a'), false);
    assert.deepEqual(
      d
        .view()
        .map((h) => h.id)
        .sort(),
      ['b', 'c'],
    );
    d.report('unknown', 'server-error'); // ignored
  });
});
