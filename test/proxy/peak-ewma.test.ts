// Peak EWMA on a simulated clock (no sleeps, exact and fast): with one of three
// endpoints 50 ms slower, it gets well under 10% of the requests where round robin
// gives it a third; an endpoint that fails fast does not win on its latency; and a
// slow endpoint that recovers wins its share back as its estimate decays.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../../src/api/protocol.js';
import type { Balancer } from '../../src/proxy/balancer/balancer.js';
import { DEFAULT_RTT_MS, PeakEwmaBalancer } from '../../src/proxy/balancer/peak-ewma.js';
import { RoundRobinBalancer } from '../../src/proxy/balancer/round-robin.js';
import { ep, seeded } from '../helpers/balancing.js';

interface Behaviour {
  rttMs: number;
  failed?: boolean;
}

/**
 * Open-model load on a fake clock: a request every `intervalMs`, each answered after its
 * endpoint's round trip; completions are reported before the next pick. Returns the
 * requests each endpoint got.
 */
function simulate(b: Balancer, clock: { now: number }, n: number, intervalMs: number, behave: (e: Endpoint) => Behaviour): Map<string, number> {
  const got = new Map<string, number>();
  const pending: { at: number; e: Endpoint; rtt: number; failed: boolean }[] = [];
  const settleUntil = (t: number): void => {
    pending.sort((x, y) => x.at - y.at);
    while (pending.length > 0 && pending[0]!.at <= t) {
      const p = pending.shift()!;
      clock.now = p.at;
      b.finished(p.e, p.rtt, p.failed);
    }
  };
  const start = clock.now;
  for (let i = 0; i < n; i++) {
    const t = start + i * intervalMs;
    settleUntil(t);
    clock.now = t;
    const r = b.pick();
    assert.equal(r.type, 'pick');
    if (r.type !== 'pick') continue;
    const { rttMs, failed = false } = behave(r.endpoint);
    b.started(r.endpoint);
    pending.push({ at: t + rttMs, e: r.endpoint, rtt: rttMs, failed });
    got.set(r.endpoint.id, (got.get(r.endpoint.id) ?? 0) + 1);
  }
  settleUntil(Infinity);
  return got;
}

const endpoints = [ep('fast-1', 1), ep('fast-2', 2), ep('slow', 3)];

describe('peak EWMA', () => {
  it('sends an endpoint 50 ms slower well under 10% of requests, where round robin sends it a third', () => {
    const slow = (e: Endpoint): Behaviour => ({ rttMs: e.id === 'slow' ? 52 : 2 });
    const clock = { now: 0 };
    const ewma = simulate(new PeakEwmaBalancer(endpoints, { random: seeded(1), now: () => clock.now }), clock, 3000, 5, slow);
    const rr = simulate(new RoundRobinBalancer(endpoints), { now: 0 }, 3000, 5, slow);
    const ewmaShare = (ewma.get('slow') ?? 0) / 3000;
    const rrShare = (rr.get('slow') ?? 0) / 3000;
    assert.ok(ewmaShare < 0.1, `EWMA sent the slow endpoint ${(ewmaShare * 100).toFixed(1)}%`);
    assert.ok(Math.abs(rrShare - 1 / 3) < 0.01, `round robin sent it ${(rrShare * 100).toFixed(1)}%`);
  });

  it('does not reward an endpoint that fails fast: failures cost at least the penalty', () => {
    const clock = { now: 0 };
    const b = new PeakEwmaBalancer(endpoints, { random: seeded(2), now: () => clock.now });
    const got = simulate(b, clock, 3000, 5, (e) => (e.id === 'slow' ? { rttMs: 0.5, failed: true } : { rttMs: 5 }));
    const share = (got.get('slow') ?? 0) / 3000;
    assert.ok(share < 0.1, `the failing endpoint got ${(share * 100).toFixed(1)}%`);
    assert.ok(b.estimate(endpoints[2]!) > 2 * b.estimate(endpoints[0]!), 'its estimate is above the healthy ones');
  });

  it('takes a slower sample at once, averages faster ones in, and decays between samples', () => {
    const clock = { now: 0 };
    const b = new PeakEwmaBalancer([endpoints[0]!], { now: () => clock.now });
    const e = endpoints[0]!;
    assert.equal(b.estimate(e), DEFAULT_RTT_MS, 'a new endpoint starts at the default');
    b.started(e);
    b.finished(e, 100, false);
    assert.equal(b.estimate(e), 100, 'a peak replaces the estimate');
    clock.now = 10_000; // one decay time later
    assert.ok(Math.abs(b.estimate(e) - 100 / Math.E) < 1e-9, `decayed to ${b.estimate(e)}`);
    b.started(e);
    b.started(e);
    assert.ok(Math.abs(b.cost(e) - (3 * 100) / Math.E) < 1e-9, 'cost is estimate × (pending + 1)');
  });

  it('gives a recovered endpoint its share back as its estimate decays', () => {
    const clock = { now: 0 };
    const b = new PeakEwmaBalancer(endpoints, { random: seeded(3), now: () => clock.now });
    simulate(b, clock, 2000, 5, (e) => ({ rttMs: e.id === 'slow' ? 202 : 2 }));
    // Now every endpoint answers alike. Its 200 ms peak decays with τ = 10 s: after a
    // minute and a half at 50 req/s it is back in rotation, with about a third.
    simulate(b, clock, 4500, 20, () => ({ rttMs: 2 }));
    const after = simulate(b, clock, 1000, 20, () => ({ rttMs: 2 }));
    const share = (after.get('slow') ?? 0) / 1000;
    assert.ok(share > 0.25, `the recovered endpoint got ${(share * 100).toFixed(1)}%`);
  });
});
