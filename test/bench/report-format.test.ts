// The printed report: ratios to nginx (the median of per-round ratios), the added p99
// against direct, an unavailable target kept in the table with its reason, the goals
// reported (never enforced), and the A/B against a baseline build (--baseline).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FixedRateResult } from '../../bench/fixed-rate.js';
import type { EchoResult } from '../../bench/tcp-echo.js';
import type { NewConnectionResult } from '../../bench/new-connections.js';
import {
  evaluate,
  formatReport,
  baselineLine,
  maxRateRatios,
  maxRateVsBaseline,
  median,
  medianRun,
  roundRatios,
  scenarioTitle,
  type BaselineInfo,
  type BenchReport,
  type NewConnectionTargetResult,
  type ProxyResources,
  type Settings,
  type TargetResult,
  type TcpResult,
} from '../../bench/report.js';

const settings: Settings = {
  wrk: { threads: 1, connections: 50, durationS: 10, warmupS: 2 },
  fixedRate: { rate: 1000, connections: 20, durationS: 10, warmupS: 2 },
  bodyBytes: 1024,
};

function fixed(p99: number): FixedRateResult {
  const lat = { count: 10000, p50: 200, p90: 400, p99, p999: p99 * 2, max: p99 * 3, mean: 250 };
  return {
    url: 'http://127.0.0.1:1/',
    rate: 1000,
    connections: 20,
    durationMs: 10000,
    warmupMs: 2000,
    scheduled: 10000,
    completed: 10000,
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    achievedRps: 1000,
    latencyUs: lat,
    sendLagUs: { ...lat, p99: 300 },
    schedulerLagUs: { ...lat, p99: 300 },
    queueWaitUs: { ...lat, p99: 1, max: 1 },
    peakQueued: 0,
    failures: [],
  };
}

function wrk(rps: number) {
  return {
    requests: rps * 10,
    rps,
    latencyUs: { p50: 300, p75: 400, p90: 500, p99: 900 },
    non2xx: 0,
    socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 },
    raw: '',
  };
}

/** A target's max-rate rounds as run.ts keeps them: the median round's run, and every round's rps. */
function rounds(...rps: number[]): Pick<TargetResult, 'maxRate' | 'maxRateRounds'> {
  return { maxRate: medianRun(rps.map(wrk)), maxRateRounds: rps };
}

function report(results: TargetResult[], tcp?: TcpResult[], s: Settings = settings): BenchReport {
  const { goals, warnings } = evaluate(results, s, tcp);
  return {
    time: '2025-01-01T00:00:00.000Z',
    environment: {
      cores: 2,
      cpuModel: 'cpu',
      memoryGiB: 4,
      platform: 'linux',
      node: 'v20',
      nginx: 'nginx/1',
      haproxy: 'HAProxy 2',
      wrk: 'wrk 4',
      trellis: '0.1.0',
    },
    settings: s,
    results,
    ...(tcp ? { tcp } : {}),
    goals,
    warnings,
  };
}

const fullSettings: Settings = {
  ...settings,
  extra: { rate: 1000, connections: 20, durationS: 5, warmupS: 1, scenarios: ['get10k', 'get100k', 'post1k'] },
  tcp: { connections: 4, chunkBytes: 65536, windowBytes: 262144, durationS: 5, warmupS: 1 },
};

function echo(mbPerS: number, errors = 0): EchoResult {
  return {
    connections: 4,
    chunkBytes: 65536,
    windowBytes: 262144,
    durationMs: 5000,
    warmupMs: 1000,
    bytesEchoed: mbPerS * 5e6,
    mbPerS,
    bytesSent: mbPerS * 6e6,
    errors,
    mismatches: 0,
  };
}

function resources(rssMb: number, cpu: number): ProxyResources[] {
  return [
    { role: 'outbound', processes: 1, rssMb, pssMb: rssMb / 2, cpuSecondsPer1kMaxRate: cpu, cpuSecondsPer1kFixedRate: cpu * 2 },
    { role: 'inbound', processes: 1, rssMb: rssMb - 1, pssMb: (rssMb - 1) / 2, cpuSecondsPer1kMaxRate: cpu, cpuSecondsPer1kFixedRate: cpu * 2 },
  ];
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

  it("counts the outbound proxy's new mTLS connections during the fixed-rate run, for the pairs that report them", () => {
    const text = formatReport(
      report([
        { name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800) },
        { name: 'trellis', path: '', maxRate: wrk(9000), fixedRate: fixed(2300), fixedRateHandshakes: 1 },
        { name: 'baseline', path: '', maxRate: wrk(9000), fixedRate: fixed(2300), fixedRateHandshakes: 20 },
      ]),
    );
    assert.match(text, /new mTLS connections the outbound proxy opened during the fixed-rate run, warm-up included: trellis 1, baseline 20\)/);
    assert.doesNotMatch(formatReport(report([{ name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800) }])), /new mTLS connections/);
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
    assert.equal(r.goals[2]!.name, 'trellis sidecar RSS');
    assert.equal(r.goals[2]!.met, undefined);
  });

  it('names the extra scenarios by body size and method', () => {
    assert.equal(scenarioTitle('get10k'), '10KB GET');
    assert.equal(scenarioTitle('get100k'), '100KB GET');
    assert.equal(scenarioTitle('post1k'), '1KB POST');
  });

  it('prints the extra scenarios, TCP echo and proxy cost with ratios to nginx, and the RSS goal', () => {
    const all = { get10k: fixed(1000), get100k: fixed(2000), post1k: fixed(1200) };
    const r = report(
      [
        { name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800), latency: { get10k: fixed(900), get100k: fixed(1500), post1k: fixed(850) } },
        { name: 'trellis', path: '', maxRate: wrk(9000), fixedRate: fixed(2300), latency: { ...all, get100k: fixed(4000) }, resources: resources(64.5, 0.06) },
        { name: 'nginx', path: '', maxRate: wrk(15000), fixedRate: fixed(1500), latency: all, resources: resources(12.9, 0.03) },
        {
          name: 'haproxy',
          path: '',
          maxRate: wrk(15000),
          fixedRate: fixed(1500),
          latencyErrors: { get10k: 'boom' },
          latency: { get100k: fixed(2000) },
          resources: resources(15, 0.02),
        },
      ],
      [
        { name: 'direct', path: '', echo: echo(800) },
        { name: 'trellis', path: '', echo: echo(300, 1) },
        { name: 'nginx', path: '', echo: echo(600) },
        { name: 'haproxy', path: '', unavailable: 'haproxy not found' },
      ],
      fullSettings,
    );
    const text = formatReport(r);
    assert.match(text, /1 s warm-up \+ 5 s measured each/);
    assert.match(text, /fixed 1,000 rps 10KB GET\s+direct/);
    // 100 KB: trellis p99 4.00 ms, nginx 2.00 ms → 2.00x; added over direct's 1.50 ms.
    assert.match(text, /trellis\s+1,000\s+0\.20 ms\s+4\.00 ms .* \+2\.50 ms\s+2\.00x/);
    assert.match(text, /fixed 1,000 rps 1KB POST/);
    assert.match(text, /haproxy\s+failed: boom/);
    assert.match(text, /tcp echo through a pair\s+direct\s+800\s+1\.33x/);
    assert.match(text, /trellis\s+300\s+0\.50x\s+1/);
    assert.match(text, /haproxy\s+unavailable: haproxy not found/);
    assert.match(text, /trellis outbound\s+64\.5\s+32\.3\s+0\.060 s\s+0\.12 s\s+5\.00x\s+2\.00x/);
    assert.match(text, /nginx inbound\s+11\.9\s+6\.0\s+0\.030 s\s+0\.060 s\s+-\s+-/);
    const rss = r.goals.find((g) => g.name === 'trellis sidecar RSS')!;
    assert.equal(rss.measured, '64.5 MB (larger of the pair)');
    assert.equal(rss.met, false);
    assert.match(text, /trellis sidecar RSS ≤ 60 MB\s+measured 64\.5 MB .*MISSED/);
    assert.ok(r.warnings.some((w) => /haproxy fixed-rate 10KB GET failed: boom/.test(w)));
    assert.ok(r.warnings.some((w) => /trellis tcp echo: 1 connections failed/.test(w)));
  });

  it('leaves the new sections out when they were not run', () => {
    const text = formatReport(report([{ name: 'direct', path: '', maxRate: wrk(60000), fixedRate: fixed(800) }]));
    assert.doesNotMatch(text, /tcp echo|proxy cost|10KB GET|extra scenarios/);
  });

  it('takes the median, and the median run (the lower middle one of an even count)', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), undefined);
    assert.equal(medianRun([wrk(300), wrk(100), wrk(200)])!.rps, 200);
    assert.equal(medianRun([wrk(400), wrk(100), wrk(300), wrk(200)])!.rps, 200, 'a real run, not an average');
    assert.equal(medianRun([]), undefined);
  });

  it('compares rounds with the same round of the reference, so drift between rounds cancels', () => {
    // The machine drifts: nginx 20k, 14k, 24k; trellis keeps 0.61, 0.66, 0.64 of it.
    const nginx: TargetResult = { name: 'nginx', path: '', ...rounds(20000, 14000, 24000) };
    const trellis: TargetResult = { name: 'trellis', path: '', ...rounds(12200, 9240, 15360) };
    const rr = roundRatios(trellis, nginx)!;
    assert.deepEqual(
      rr.rounds.map((v) => v.toFixed(2)),
      ['0.61', '0.66', '0.64'],
    );
    assert.equal(rr.median.toFixed(2), '0.64');
    // The median rounds' own ratio (12,200 / 20,000) would say 0.61.
    assert.equal((trellis.maxRate!.rps / nginx.maxRate!.rps).toFixed(2), '0.61');
    assert.equal(roundRatios(nginx, nginx)!.median, 1);
    assert.equal(roundRatios(trellis, undefined), undefined);
    assert.equal(roundRatios({ name: 'trellis', path: '', unavailable: 'x' }, nginx), undefined);
  });

  it('pairs only the rounds both completed, and reads a result from before the rounds as one round', () => {
    const nginx: TargetResult = { name: 'nginx', path: '', ...rounds(20000, 10000), maxRateError: 'wrk exited with 1' };
    assert.deepEqual(roundRatios({ name: 'trellis', path: '', ...rounds(12000, 7000, 9000) }, nginx)!.rounds, [0.6, 0.7]);
    const old: TargetResult = { name: 'trellis', path: '', maxRate: wrk(9000) };
    assert.deepEqual(roundRatios(old, { name: 'nginx', path: '', maxRate: wrk(15000) }), { median: 0.6, rounds: [0.6] });
    assert.deepEqual(
      roundRatios({ name: 'trellis', path: '', ...rounds(6000, 9000) }, { name: 'nginx', path: '', ...rounds(0, 15000) }),
      { median: 0.6, rounds: [0.6] },
      'a zero round has no ratio',
    );
  });

  it('reports the median of the per-round ratios in the table, the goal and the JSON', () => {
    const s: Settings = { ...settings, wrk: { ...settings.wrk, durationS: 5, rounds: 3 } };
    const results: TargetResult[] = [
      { name: 'direct', path: '', ...rounds(60000, 42000, 72000), fixedRate: fixed(800) },
      { name: 'trellis', path: '', ...rounds(12200, 9240, 15360), fixedRate: fixed(2300) },
      { name: 'nginx', path: '', ...rounds(20000, 14000, 24000), fixedRate: fixed(1500) },
    ];
    const r = report(results, undefined, s);
    const text = formatReport(r);
    assert.match(text, /\(wrk -t1 -c50 -d5s,\s+trellis/);
    assert.match(text, /3 rounds\)\s+nginx/);
    assert.match(text, /vs nginx per round\s+rps per round/);
    // rps, p50 and p99 of the median round (12,200); vs nginx the median ratio.
    assert.match(text, /trellis\s+12,200\s+0\.30 ms\s+0\.90 ms\s+0\.64x\s+0\s+-\s+0\.61 0\.66 0\.64\s+12,200 9,240 15,360/);
    assert.match(text, /direct\s+60,000 .* 3\.00x .* 3\.00 3\.00 3\.00\s+60,000 42,000 72,000/);
    assert.match(text, /nginx\s+20,000 .* 1\.00x/);
    assert.equal(r.goals[0]!.measured, '0.64 (rounds 0.61, 0.66, 0.64)');
    assert.equal(r.goals[0]!.met, true);
    assert.match(text, /trellis\/nginx max throughput ≥ 0\.60\s+measured 0\.64 \(rounds 0\.61, 0\.66, 0\.64\) {2}met/);
    const json = maxRateRatios(results);
    assert.deepEqual(Object.keys(json), ['direct', 'trellis', 'nginx']);
    assert.equal(json.trellis!.median.toFixed(2), '0.64');
    assert.equal(json.trellis!.rounds.length, 3);
  });

  it('warns when a proxy keeps up with direct in most rounds', () => {
    const r = report([
      { name: 'direct', path: '', ...rounds(20000, 30000, 25000) },
      { name: 'nginx', path: '', ...rounds(19000, 28500, 15000) },
    ]);
    assert.ok(
      r.warnings.some((w) => /nginx reached 95% of direct/.test(w)),
      r.warnings.join('\n'),
    );
  });
});

describe('bench report with a baseline build (--baseline)', () => {
  const info: BaselineInfo = {
    dir: '/tmp/trellis-bench-x/baseline-checkout',
    ref: 'HEAD~3',
    commit: '8397447c0d1e2f3a',
    trellisCommit: '826645fa1b2c3d4e',
    trellisDirty: true,
  };
  const s: Settings = { ...fullSettings, wrk: { ...settings.wrk, durationS: 5, rounds: 3 } };
  // The machine drifts (nginx 20k, 14k, 24k); trellis keeps 1.05, 1.10, 1.00 of the baseline.
  const results: TargetResult[] = [
    { name: 'direct', path: '', ...rounds(60000, 42000, 72000), fixedRate: fixed(800), latency: { get10k: fixed(900) } },
    { name: 'trellis', path: '', ...rounds(12600, 9240, 15000), fixedRate: fixed(2300), latency: { get10k: fixed(1900) }, resources: resources(58, 0.06) },
    { name: 'baseline', path: '', ...rounds(12000, 8400, 15000), fixedRate: fixed(2500), resources: resources(57, 0.07) },
    { name: 'nginx', path: '', ...rounds(20000, 14000, 24000), fixedRate: fixed(1500), latency: { get10k: fixed(1000) }, resources: resources(12.9, 0.03) },
  ];
  const withBaseline = (rs: TargetResult[]): BenchReport => ({ ...report(rs, undefined, s), baseline: info, maxRateVsBaseline: maxRateVsBaseline(rs) });

  it('prints the baseline row with its ratio to nginx, and the A/B line', () => {
    const text = formatReport(withBaseline(results));
    // 12,000 of 20,000 in its median round; against nginx per round 0.60 0.60 0.63.
    assert.match(text, /baseline\s+12,000\s+0\.30 ms\s+0\.90 ms\s+0\.60x\s+0\s+-\s+0\.60 0\.60 0\.63\s+12,000 8,400 15,000/);
    assert.match(text, /trellis\s+12,600 .* 0\.63x/);
    assert.match(text, /\ntrellis vs baseline: 1\.05× throughput \(median of per-round ratios: 1\.05, 1\.10, 1\.00\), added p99 \+1\.50 ms vs \+1\.70 ms\n/);
    assert.match(
      text,
      /A\/B: trellis = this checkout \(826645fa1b2c, with uncommitted changes\); baseline = HEAD~3 \(8397447c0d1e, built in a temporary worktree\)/,
    );
    // The 1 KB fixed rate has its row; its added p99 is over direct's like trellis's.
    assert.match(text, /baseline\s+1,000\s+0\.20 ms\s+2\.50 ms\s+5\.00 ms\s+7\.50 ms\s+\+1\.70 ms/);
  });

  it('prints its RSS and CPU per 1,000 requests with ratios to nginx, and leaves it out of the extra scenarios', () => {
    const text = formatReport(withBaseline(results));
    assert.match(text, /baseline outbound\s+57\.0\s+28\.5\s+0\.070 s\s+0\.14 s\s+4\.42x\s+2\.33x/);
    assert.match(text, /baseline inbound\s+56\.0/);
    const get10k = text.slice(text.indexOf('fixed 1,000 rps 10KB GET'));
    assert.doesNotMatch(get10k.slice(0, get10k.indexOf('\n\n')), /baseline/);
  });

  it('names a --baseline DIR by its folder and commit', () => {
    const text = formatReport({ ...withBaseline(results), baseline: { dir: '/tmp/base', commit: '8397447c0d1e2f3a', trellisCommit: '826645fa1b2c3d4e' } });
    assert.match(text, /A\/B: trellis = this checkout \(826645fa1b2c\); baseline = \/tmp\/base \(8397447c0d1e\)/);
    assert.match(formatReport({ ...withBaseline(results), baseline: { dir: '/tmp/base' } }), /baseline = \/tmp\/base \(not a git checkout\)/);
  });

  it('saves the per-round ratios to the baseline and their median', () => {
    const r = withBaseline(results);
    assert.deepEqual(
      r.maxRateVsBaseline!.trellis!.rounds.map((v) => v.toFixed(2)),
      ['1.05', '1.10', '1.00'],
    );
    assert.equal(r.maxRateVsBaseline!.trellis!.median.toFixed(2), '1.05');
    assert.equal(maxRateRatios(results).baseline!.median.toFixed(2), '0.60');
    const json = JSON.parse(JSON.stringify(r)) as BenchReport;
    assert.deepEqual(json.baseline, info);
    assert.deepEqual(
      json.results.map((t) => t.name),
      ['direct', 'trellis', 'baseline', 'nginx'],
    );
  });

  it('says why the A/B could not be measured when the baseline did not start', () => {
    const rs: TargetResult[] = [
      ...results.filter((t) => t.name !== 'baseline'),
      { name: 'baseline', path: '', unavailable: 'trellis control exited (code 1)' },
    ];
    assert.equal(baselineLine(rs), 'trellis vs baseline: throughput not measured (baseline unavailable), added p99 +1.50 ms vs -');
    assert.deepEqual(maxRateVsBaseline(rs), {});
    assert.match(formatReport(withBaseline(rs)), /baseline\s+unavailable: trellis control exited \(code 1\)/);
  });

  it('prints nothing of it without a baseline', () => {
    const rs = results.filter((t) => t.name !== 'baseline');
    const text = formatReport(report(rs, undefined, s));
    assert.doesNotMatch(text, /baseline|A\/B/);
    assert.deepEqual(maxRateVsBaseline(rs), {});
  });

  it('compares the mTLS pair with the TLS peers and the plaintext pair with the plaintext ones, with goals for each', () => {
    const rs: TargetResult[] = [
      { name: 'direct', path: '', ...rounds(60000, 60000, 60000), fixedRate: fixed(800) },
      { name: 'trellis', path: '', ...rounds(7000, 7200, 6800), fixedRate: fixed(1500) },
      { name: 'trellis-plain', path: '', ...rounds(9000, 9000, 9000), fixedRate: fixed(1200) },
      { name: 'nginx', path: '', ...rounds(15000, 15000, 15000), fixedRate: fixed(1000) },
      { name: 'nginx-tls', path: '', ...rounds(10000, 10000, 10000), fixedRate: fixed(1100) },
      { name: 'haproxy-tls', path: '', ...rounds(14000, 14400, 13600), fixedRate: fixed(1100) },
    ];
    const newConnections: NewConnectionTargetResult[] = [
      { name: 'direct', path: '', result: conns(20000) },
      { name: 'trellis', path: '', result: conns(1500) },
      { name: 'nginx-tls', path: '', result: conns(3000) },
      { name: 'haproxy-tls', path: '', unavailable: 'haproxy not found' },
    ];
    const s2: Settings = { ...settings, newConnections: { concurrency: 8, durationS: 5, warmupS: 1 } };
    const { goals, warnings } = evaluate(rs, s2, [], newConnections);
    const byGoal = new Map(goals.map((g) => [g.name, g]));
    assert.equal(byGoal.get('trellis-plain/nginx max throughput')?.measured, '0.60 (rounds 0.60, 0.60, 0.60)');
    assert.equal(byGoal.get('trellis (mTLS)/nginx-tls max throughput')?.measured, '0.70 (rounds 0.70, 0.72, 0.68)');
    assert.equal(byGoal.get('trellis (mTLS)/nginx-tls max throughput')?.met, true);
    assert.equal(byGoal.get('added p99 at 1000 rps (trellis-plain)')?.measured, '0.40 ms');
    assert.equal(byGoal.get('added p99 at 1000 rps (trellis, mTLS)')?.measured, '0.70 ms');
    assert.equal(byGoal.get('added p99 at 1000 rps (trellis, mTLS)')?.met, true);
    const text = formatReport({ ...report(rs, undefined, s2), newConnections, goals, warnings });
    assert.match(text, /trellis\/nginx-tls\s+0\.70 \(rounds 0\.70, 0\.72, 0\.68\)/);
    assert.match(text, /trellis\/haproxy-tls\s+0\.50/);
    assert.match(text, /trellis\/trellis-plain\s+0\.78/);
    assert.match(text, /new connections through a TCP pair\s+direct\s+20,000/);
    assert.match(text, /trellis\s+1,500 .* 0\.50x/);
    assert.match(text, /haproxy-tls\s+unavailable: haproxy not found/);
  });

  it('judges the added p99 by the paired rounds when the run has them: the median of each round against direct in the same round', () => {
    // direct drifts from round to round by more than the pairs add; the single runs
    // (direct's a minute before) say 1.90 ms for mTLS, the rounds 0.60.
    const rs: TargetResult[] = [
      { name: 'direct', path: '', ...rounds(60000), fixedRate: fixed(800), p99Rounds: [900, 3000, 1000, 2500, 1100] },
      { name: 'trellis', path: '', ...rounds(7000), fixedRate: fixed(2700), p99Rounds: [1500, 3400, 1600, 3300, null] },
      { name: 'trellis-plain', path: '', ...rounds(9000), fixedRate: fixed(1200), p99Rounds: [1100, 3300, 1300, 2700, 1400] },
      { name: 'nginx', path: '', ...rounds(15000), fixedRate: fixed(1000), p99Rounds: [1800, 3900, 2000, 3500, 2100] },
    ];
    const s: Settings = { ...settings, p99Rounds: { rounds: 5, durationS: 4, warmupS: 1 } };
    const { goals, warnings } = evaluate(rs, s);
    const byGoal = new Map(goals.map((g) => [g.name, g]));
    const mtls = byGoal.get('added p99 at 1000 rps (trellis, mTLS)')!;
    // rounds: 0.60, 0.40, 0.60, 0.80 (the fifth failed): the lower middle of four
    assert.equal(mtls.measured, '0.60 ms (median of 4 paired rounds: 0.60, 0.40, 0.60, 0.80); the single 10s run: 1.90 ms');
    assert.equal(mtls.met, true);
    assert.match(byGoal.get('added p99 at 1000 rps (trellis-plain)')!.measured, /^0\.30 ms \(median of 5 paired rounds: 0\.20, 0\.30, 0\.30, 0\.20, 0\.30\)/);
    const text = formatReport({ ...report(rs, undefined, s), goals, warnings });
    assert.match(text, /\(added p99 in 5 paired rounds of 4s, .*: trellis \+0\.60 ms \(0\.60, 0\.40, 0\.60, 0\.80\); trellis-plain \+0\.30 ms/);
    // nginx's pair is there for reference, never a goal
    assert.match(text, /; nginx \+1\.00 ms \(0\.90, 0\.90, 1\.00, 1\.00, 1\.00\)\)/);
    assert.ok(!goals.some((g) => g.name.includes('nginx') && g.name.includes('added')));
    // A run without rounds keeps the single run's figure.
    const single = evaluate(
      rs.map(({ p99Rounds: _, ...r }) => r),
      settings,
    ).goals.find((g) => g.name === 'added p99 at 1000 rps (trellis, mTLS)');
    assert.equal(single?.measured, '1.90 ms');
  });

  it('keeps the old goals when there is no plaintext pair', () => {
    const rs: TargetResult[] = [
      { name: 'direct', path: '', ...rounds(60000), fixedRate: fixed(800) },
      { name: 'trellis', path: '', ...rounds(9000), fixedRate: fixed(2300) },
      { name: 'nginx', path: '', ...rounds(15000), fixedRate: fixed(1500) },
    ];
    const names = evaluate(rs, settings).goals.map((g) => g.name);
    assert.deepEqual(names, ['trellis/nginx max throughput', 'added p99 at 1000 rps (trellis)', 'trellis sidecar RSS']);
  });
});

function conns(perSecond: number): NewConnectionResult {
  const lat = { count: perSecond * 5, p50: 400, p90: 600, p99: 900, p999: 1200, max: 2000, mean: 450 };
  return { concurrency: 8, durationMs: 5000, completed: perSecond * 5, perSecond, latencyUs: lat, errors: 0 };
}
