// The printed report: ratios to nginx, the added p99 against direct, an unavailable
// target kept in the table with its reason, and the goals reported (never enforced).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FixedRateResult } from '../../bench/fixed-rate.js';
import { evaluate, formatReport, type BenchReport, type Settings, type TargetResult } from '../../bench/report.js';

const settings: Settings = {
  wrk: { threads: 1, connections: 50, durationS: 10, warmupS: 2 },
  fixedRate: { rate: 1000, connections: 20, durationS: 10, warmupS: 2 },
  bodyBytes: 1024,
};

function fixed(p99: number): FixedRateResult {
  const lat = { count: 10000, p50: 200, p90: 400, p99, p999: p99 * 2, max: p99 * 3, mean: 250 };
  return {
    url: 'http://127.0.0.1:1/', rate: 1000, connections: 20, durationMs: 10000, warmupMs: 2000,
    scheduled: 10000, completed: 10000, non2xx: 0, errors: 0, timeouts: 0, achievedRps: 1000,
    latencyUs: lat, sendLagUs: { ...lat, p99: 300 }, schedulerLagUs: { ...lat, p99: 300 },
    queueWaitUs: { ...lat, p99: 1, max: 1 }, peakQueued: 0, failures: [],
  };
}

function wrk(rps: number) {
  return { requests: rps * 10, rps, latencyUs: { p50: 300, p75: 400, p90: 500, p99: 900 }, non2xx: 0,
    socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 }, raw: '' };
}

function report(results: TargetResult[]): BenchReport {
  const { goals, warnings } = evaluate(results, settings);
  return {
    time: '2025-01-01T00:00:00.000Z',
    environment: { cores: 2, cpuModel: 'cpu', memoryGiB: 4, platform: 'linux', node: 'v20', nginx: 'nginx/1', haproxy: 'HAProxy 2', wrk: 'wrk 4', trellis: '0.1.0' },
    settings, results, goals, warnings,
  };
}

describe('bench report', () => {
  it('gives ratios to nginx, the added p99 and the goals', () => {
    const r = report([
      { name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800) },
      { name: 'trellis', path: '', maxRate: wrk(9000), fixedRate: fixed(2300) },
      { name: 'nginx', path: '', maxRate: wrk(15000), fixedRate: fixed(1500) },
    ]);
    const text = formatReport(r);
    assert.match(text, /trellis\s+9,000 .* 0\.60x/);
    assert.match(text, /trellis\s+1,000 .* \+1\.50 ms/);
    assert.equal(r.goals[0]!.measured, '0.60');
    assert.equal(r.goals[0]!.met, true);
    assert.equal(r.goals[1]!.measured, '1.50 ms');
    assert.equal(r.goals[1]!.met, true);
  });

  it('keeps an unavailable target as a row with its reason', () => {
    const r = report([
      { name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800) },
      { name: 'trellis', path: '', unavailable: 'trellis control exited (code 1)' },
      { name: 'nginx', path: '', maxRate: wrk(15000), fixedRate: fixed(1500) },
    ]);
    const text = formatReport(r);
    assert.match(text, /trellis\s+unavailable: trellis control exited \(code 1\)/);
    assert.match(text, /nginx\s+15,000 .* 1\.00x/);
    assert.equal(r.goals[0]!.met, undefined);
    assert.match(r.goals[0]!.measured, /trellis unavailable/);
  });
});
