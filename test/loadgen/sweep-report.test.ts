// What a sweep looks like: the table row, the result line, and the SVG plot and HTML
// report, which carry every step's percentiles, the SLO line and the knee.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatStepRow, formatSweepSummary, renderSweepHtml, renderSweepSvg } from '../../src/loadgen/sweep-report.js';
import type { SweepResult, SweepStep } from '../../src/loadgen/sweep.js';

const slo = { p99Ms: 100, minSuccess: 0.999, minAchieved: 0.95 };

function step(n: number, rate: number, p99Ms: number, ok: boolean, errors = 0): SweepStep {
  return {
    step: n,
    phase: n <= 3 ? 'exponential' : 'bisect',
    rate,
    ok,
    success: 1 - errors / 1000,
    reasons: ok ? [] : [`p99 ${p99Ms} ms > 100 ms`],
    measure: {
      rate,
      achievedRps: rate,
      scheduled: 1000,
      completed: 1000,
      interrupted: false,
      errors: { total: errors, connect: 0, reset: 0, timeout: 0, protocol: 0, status: errors ? { 503: errors } : {} },
      latencyUs: { count: 1000, p50: 1500, p90: 2000, p99: p99Ms * 1000, p999: p99Ms * 1500, max: p99Ms * 2000, mean: 1600 },
    },
  };
}

const result: SweepResult = {
  steps: [step(1, 100, 3, true), step(2, 200, 4, true), step(3, 400, 250, false, 12), step(4, 300, 20, true), step(5, 350, 140, false)],
  saturation: 300,
  firstBad: 350,
  stoppedBy: 'precision',
};

describe('sweep report', () => {
  it('prints a table row per step and the result line', () => {
    const row = formatStepRow(result.steps[2]!);
    assert.match(row, /^ +3 +exponential +400 +400 +1\.50 ms +250 ms +375 ms +1\.20% +over SLO \(p99 250 ms > 100 ms\)\n$/);
    assert.match(formatStepRow(result.steps[0]!), / ok\n$/);
    assert.equal(formatSweepSummary(result, slo, 100_000), 'saturation: ~300 req/s (highest rate meeting p99 ≤ 100 ms and success ≥ 99.9%)\n');
    assert.match(
      formatSweepSummary({ ...result, stoppedBy: 'max-steps' }, slo, 100_000),
      /stopped after --max-steps steps: the knee lies between 300 and 350 req\/s/,
    );
    assert.match(
      formatSweepSummary({ steps: result.steps.slice(0, 2), saturation: 200, firstBad: undefined, stoppedBy: 'max-rate' }, slo, 200),
      /not reached up to --max-rate 200 req\/s/,
    );
    assert.match(formatSweepSummary({ steps: [], saturation: undefined, firstBad: undefined, stoppedBy: 'min-rate' }, slo, 200), /saturation: not found/);
  });

  it('plots every step of p50, p99 and p99.9, the SLO line and the knee', () => {
    const svg = renderSweepSvg(result, slo);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\n$/);
    for (const s of result.steps) {
      for (const [series, us] of [
        ['p50', s.measure.latencyUs.p50],
        ['p99', s.measure.latencyUs.p99],
        ['p999', s.measure.latencyUs.p999],
      ] as const) {
        assert.ok(svg.includes(`data-series="${series}" data-rate="${s.rate}" data-ms="${us / 1000}" data-ok="${s.ok}"`), `${series} point at ${s.rate}`);
      }
    }
    assert.equal(svg.match(/<circle class="point"/g)?.length, 15);
    assert.match(svg, /<line class="slo" data-p99-ms="100" /);
    assert.match(svg, /SLO p99 100 ms/);
    assert.match(svg, /<line class="knee" data-rate="300" /);
    assert.match(svg, /knee ~300 req\/s/);
    for (const label of ['1 ms', '10 ms', '100 ms', '1 s']) assert.ok(svg.includes(`>${label}</text>`), `latency tick ${label}`);
    // The SLO line sits between the 10 ms and 1 s ticks, on a log scale: halfway.
    const yOf = (label: string): number => Number(new RegExp(`y="([\\d.]+)">${label}</text>`).exec(svg)![1]) - 4;
    const sloY = Number(/class="slo"[^>]* y1="([\d.]+)"/.exec(svg)![1]);
    assert.ok(Math.abs(sloY - (yOf('10 ms') + yOf('1 s')) / 2) < 0.2, `SLO line at ${sloY}`);
  });

  it('writes one HTML page with the result, the plot and the table, escaped', () => {
    const html = renderSweepHtml(
      result,
      {
        target: 'http://127.0.0.1:1/a?b=<c>&d',
        method: 'GET',
        protocol: 'http/1.1',
        connections: 20,
        stepDurationMs: 5000,
        warmupMs: 1000,
        slo,
        startedAt: new Date('2026-01-02T03:04:05Z'),
      },
      100_000,
    );
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /saturation: ~300 req\/s/);
    assert.match(html, /<svg [\s\S]*<line class="slo"[\s\S]*<\/svg>/);
    assert.equal(html.match(/<tr class="(ok|over)">/g)?.length, 5);
    assert.match(
      html,
      /<tr class="over"><td>3<\/td><td>exponential<\/td><td>400<\/td><td>400<\/td><td>1\.50 ms<\/td><td>250 ms<\/td><td>375 ms<\/td><td>1\.20%<\/td><td>over SLO \(p99 250 ms &gt; 100 ms\)<\/td><\/tr>/,
    );
    assert.ok(html.includes('http://127.0.0.1:1/a?b=&lt;c&gt;&amp;d'));
    assert.ok(!html.includes('<c>'));
    assert.match(html, /2026-01-02T03:04:05\.000Z/);
  });
});
