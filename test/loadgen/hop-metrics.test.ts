// The bottleneck account on fixed inputs: a proxy's counters read from its /metrics
// text, counters' deltas (restarts included), time inside / error rate / CPU per
// service, and the naming of the hop that saturates first.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  countersDelta,
  hopStep,
  nameBottleneck,
  proxyCounters,
  type HopStep,
  type HopTopology,
  type MeshCounters,
  type RatedHopStep,
} from '../../src/loadgen/hop-metrics.js';
import { formatBottleneck, formatHopLine, renderSweepHtml } from '../../src/loadgen/sweep-report.js';
import type { SweepResult } from '../../src/loadgen/sweep.js';

const topo: HopTopology = {
  services: [
    { name: 'a', upstreams: ['b'] },
    { name: 'b', upstreams: ['c'] },
    { name: 'c', upstreams: [] },
  ],
  target: 'a',
  entry: 'trellis-ingress',
};

/** One HTTP series of a sidecar's exposition: count and sum, with a bucket line to be skipped. */
function series(proxy: string, direction: string, destination: string, status: number, count: number, sum: number): string {
  const l = `direction="${direction}",source="x",destination="${destination}",destination_version="default",route="r",status="${status}",proxy_service="${proxy}",proxy_id="${proxy}-0"`;
  return (
    `trellis_http_request_duration_seconds_bucket{le="0.001",${l}} 0\n` +
    `trellis_http_request_duration_seconds_sum{${l}} ${sum}\ntrellis_http_request_duration_seconds_count{${l}} ${count}\n`
  );
}

function cpu(proxy: string, seconds: number, app?: number): string {
  return (
    `# HELP trellis_proxy_process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE trellis_proxy_process_cpu_seconds_total counter\n` +
    `trellis_proxy_process_cpu_seconds_total{proxy_service="${proxy}",proxy_id="${proxy}-0"} ${seconds}\n` +
    (app === undefined ? '' : `trellis_proxy_app_cpu_seconds_total{proxy_service="${proxy}",proxy_id="${proxy}-0"} ${app}\n`)
  );
}

/**
 * The chain ingress → a → b → c with `n` requests, each spending `inside` seconds in
 * a, b and c; `errors` of c's answers 503 (and so b's and a's 502).
 */
function chain(n: number, inside: { a: number; b: number; c: number }, cpuS: { a: number; b: number; c: number }, at: number, errors = 0): MeshCounters {
  const cT = inside.c,
    bT = inside.b + cT,
    aT = inside.a + bT;
  const ok = n - errors;
  const text = {
    'trellis-ingress': series('trellis-ingress', 'outbound', 'a', 200, n, n * aT),
    a:
      series('a', 'inbound', 'a', 200, ok, ok * aT) +
      (errors ? series('a', 'inbound', 'a', 502, errors, errors * aT) : '') +
      series('a', 'outbound', 'b', 200, n, n * bT) +
      cpu('a', cpuS.a),
    b:
      series('b', 'inbound', 'b', 200, ok, ok * bT) +
      (errors ? series('b', 'inbound', 'b', 502, errors, errors * bT) : '') +
      series('b', 'outbound', 'c', 200, n, n * cT) +
      cpu('b', cpuS.b),
    c: series('c', 'inbound', 'c', 200, ok, ok * cT) + (errors ? series('c', 'inbound', 'c', 503, errors, errors * cT) : '') + cpu('c', cpuS.c, cpuS.c / 2),
  };
  return { at, proxies: Object.entries(text).map(([svc, t]) => proxyCounters(`${svc}-0`, svc, t)) };
}

describe("a proxy's counters", () => {
  it("reads a proxy's counters: HTTP count and sum by direction, destination and status; CPU", () => {
    const p = proxyCounters('b-0', 'b', series('b', 'inbound', 'b', 200, 10, 0.5) + series('b', 'inbound', 'b', 503, 2, 0.1) + cpu('b', 1.5, 0.25));
    assert.equal(p.cpuSeconds, 1.5);
    assert.equal(p.appCpuSeconds, 0.25);
    assert.deepEqual(
      p.http.map((h) => [h.direction, h.destination, h.status, h.count, h.sum]),
      [
        ['inbound', 'b', '200', 10, 0.5],
        ['inbound', 'b', '503', 2, 0.1],
      ],
    );
    assert.equal(proxyCounters('x', 'x', series('x', 'inbound', 'x', 200, 1, 1)).appCpuSeconds, undefined);
  });
});

describe('counters deltas', () => {
  it('subtracts each series and CPU, and counts a restarted proxy from zero', () => {
    const before = chain(100, { a: 0.001, b: 0.002, c: 0.02 }, { a: 1, b: 2, c: 3 }, 0);
    const after = chain(300, { a: 0.001, b: 0.002, c: 0.02 }, { a: 1.5, b: 2.5, c: 3.2 }, 2000);
    const d = countersDelta(before, after);
    const c = d.proxies.find((p) => p.service === 'c')!;
    assert.equal(c.http[0]!.count, 200);
    assert.ok(Math.abs(c.http[0]!.sum - 200 * 0.02) < 1e-9);
    assert.ok(Math.abs(c.cpuSeconds! - 0.2) < 1e-9);
    // c restarted: its counters went down, so what it shows now is the step's
    const restarted = countersDelta(before, { at: 2000, proxies: [proxyCounters('c-0', 'c', series('c', 'inbound', 'c', 200, 7, 0.14) + cpu('c', 0.3))] });
    assert.deepEqual(
      restarted.proxies[0]!.http.map((h) => h.count),
      [7],
    );
    assert.equal(restarted.proxies[0]!.cpuSeconds, 0.3);
  });
});

describe('per-service account', () => {
  it('gives time inside per request, share of end-to-end, error rate and cores', () => {
    const before = chain(0, { a: 0, b: 0, c: 0 }, { a: 0, b: 0, c: 0 }, 0);
    const after = chain(100, { a: 0.001, b: 0.002, c: 0.02 }, { a: 0.1, b: 0.2, c: 0.9 }, 1000, 4);
    const h = hopStep(topo, countersDelta(before, after), 1);
    assert.deepEqual(
      h.services.map((s) => s.service),
      ['c', 'b', 'a', 'trellis-ingress'],
      'slowest inside first',
    );
    const entry = h.services[3]!;
    assert.equal(entry.role, 'entry');
    assert.ok(entry.insideMs < 1e-6, "the ingress adds nothing here: its time equals a's inbound time");
    const [c, b, a] = h.services as [(typeof h.services)[0], (typeof h.services)[0], (typeof h.services)[0]];
    assert.ok(Math.abs(c.insideMs - 20) < 1e-6 && Math.abs(b.insideMs - 2) < 1e-6 && Math.abs(a.insideMs - 1) < 1e-6);
    assert.ok(Math.abs(h.e2eMs! - 23) < 1e-6);
    assert.equal(h.e2eRequests, 100);
    assert.ok(Math.abs(c.share! - 20 / 23) < 1e-6);
    assert.equal(c.errorRate, 0.04);
    assert.equal(c.requests, 100);
    assert.ok(Math.abs(c.sidecarCores! - 0.9) < 1e-9);
    assert.ok(Math.abs(c.appCores! - 0.45) < 1e-9);
    assert.equal(a.appCores, undefined);
    assert.match(
      formatHopLine(h),
      /slowest hop: c 20\.0 ms \(87%, 4\.0% errors, app 0\.45 cores, sidecar 0\.90 cores\); then b 2\.00 ms.*; trellis-ingress \(entry proxy\) 0\.00 ms/,
    );
  });

  it("accounts the entry proxy: end-to-end minus the target's inbound time, with its CPU", () => {
    const after = chain(100, { a: 0.001, b: 0.001, c: 0.001 }, { a: 0, b: 0, c: 0 }, 1000);
    const ingress = proxyCounters(
      'trellis-ingress',
      'trellis-ingress',
      series('trellis-ingress', 'outbound', 'a', 200, 100, 100 * 0.008) + cpu('trellis-ingress', 0.95),
    );
    const d: MeshCounters = { at: 1000, proxies: [...after.proxies.filter((p) => p.service !== 'trellis-ingress'), ingress] };
    const steps = [
      {
        step: 1,
        rate: 50,
        ok: true,
        hops: hopStep(topo, chain(100, { a: 0.001, b: 0.001, c: 0.001 }, { a: 0, b: 0, c: 0 }, 1000), 1, { requests: 100, meanMs: 3.2 }),
      },
      { step: 2, rate: 100, ok: false, hops: hopStep(topo, d, 1, { requests: 100, meanMs: 9 }) },
    ];
    const e = steps[1]!.hops.services[0]!;
    assert.equal(e.role, 'entry');
    assert.ok(Math.abs(e.insideMs - 5) < 1e-6);
    assert.equal(e.peak?.proxyId, 'trellis-ingress');
    const b = nameBottleneck(steps, topo)!;
    assert.deepEqual([b.service, b.role], ['trellis-ingress', 'entry']);
    assert.match(
      formatBottleneck({ steps: new Map(), bottleneck: b, appCpu: true }),
      /^bottleneck: trellis-ingress \(entry proxy\) \(its sidecar \(trellis-ingress\) ran at 0\.95 cores/,
    );
    assert.match(formatHopLine(steps[1]!.hops), /the client waited 1\.00 ms per request before the mesh/);
    const hops = new Map(steps.map((x) => [x.step, x.hops]));
    const busy = { ...steps[1]!.hops, clientMs: 30, machine: { cores: 2, busyCores: 1.9, clientCores: 0.6 } };
    assert.match(formatHopLine(busy), /; machine 1\.90 of 2 cores busy \(client 0\.60\)$/m);
    hops.set(2, busy);
    assert.match(
      formatBottleneck({ steps: hops, bottleneck: b, appCpu: true }),
      /this machine was busy on 1\.90 of its 2 cores, 0\.60 of them the load client's/,
    );
    hops.set(2, { ...busy, machine: undefined });
    assert.match(
      formatBottleneck({ steps: hops, bottleneck: b, appCpu: true }),
      /the client waited 22\.0 ms per request before the mesh, more than the mesh took/,
    );
  });

  it('leaves out services without inbound requests, and falls back to the client for end-to-end', () => {
    const after = chain(10, { a: 0.001, b: 0.002, c: 0.004 }, { a: 0, b: 0, c: 0 }, 1000);
    const noIngress = { ...after, proxies: after.proxies.filter((p) => p.service !== 'c' && p.service !== 'trellis-ingress') };
    const h = hopStep(topo, noIngress, 1, { requests: 10, meanMs: 10 });
    assert.deepEqual(
      h.services.map((s) => s.service),
      ['b', 'a'],
    );
    assert.equal(h.e2eMs, 10);
    // b's outbound to c is still subtracted: time inside b is its own 2 ms
    assert.ok(Math.abs(h.services[0]!.insideMs - 2) < 1e-6);
  });
});

function rated(
  step: number,
  rate: number,
  ok: boolean,
  inside: { a: number; b: number; c: number },
  cpuS = { a: 0.05, b: 0.05, c: 0.05 },
  errors = 0,
): RatedHopStep {
  const zero = chain(0, { a: 0, b: 0, c: 0 }, { a: 0, b: 0, c: 0 }, 0);
  return { step, rate, ok, hops: hopStep(topo, countersDelta(zero, chain(rate, inside, cpuS, 1000, errors)), 1) };
}

describe('naming the bottleneck', () => {
  it('names the service whose time inside grows most towards the knee', () => {
    const steps = [
      rated(1, 20, true, { a: 0.003, b: 0.002, c: 0.02 }),
      rated(2, 40, true, { a: 0.003, b: 0.002, c: 0.025 }),
      rated(3, 80, false, { a: 0.004, b: 0.002, c: 0.4 }),
      rated(4, 60, false, { a: 0.0035, b: 0.002, c: 0.15 }),
    ];
    const b = nameBottleneck(steps, topo)!;
    assert.equal(b.service, 'c');
    assert.equal(b.step, 4, 'judged at the lowest failing rate');
    assert.match(b.reason, /^time inside 150 ms per request at 60 req\/s, \d+% of end-to-end, up from 20\.0 ms at 20 req\/s/);
    // a slow but steady service is not the bottleneck: growth is what counts
    const steady = [rated(1, 20, true, { a: 0.05, b: 0.002, c: 0.01 }), rated(2, 40, false, { a: 0.05, b: 0.002, c: 0.03 })];
    assert.equal(nameBottleneck(steady, topo)!.service, 'c');
  });

  it('names the deepest failing service, and a service at a full core', () => {
    const failing = [rated(1, 20, true, { a: 0.001, b: 0.001, c: 0.001 }), rated(2, 40, false, { a: 0.001, b: 0.05, c: 0.001 }, undefined, 10)];
    const f = nameBottleneck(failing, topo)!;
    assert.equal(f.service, 'c', 'a and b fail because c does');
    assert.match(f.reason, /25% of its requests failed at 40 req\/s/);
    const busy = [
      rated(1, 100, true, { a: 0.001, b: 0.001, c: 0.001 }),
      rated(2, 200, false, { a: 0.0012, b: 0.0015, c: 0.0011 }, { a: 0.1, b: 0.95, c: 0.1 }),
    ];
    const cpuBound = nameBottleneck(busy, topo)!;
    assert.equal(cpuBound.service, 'b');
    assert.match(cpuBound.reason, /its sidecar \(b-0\) ran at 0\.95 cores at 200 req\/s/);
  });

  it('judges growth from the least time below the knee, and a full core per process, not per service', () => {
    const cold = [
      rated(1, 20, true, { a: 0.004, b: 0.001, c: 0.009 }),
      rated(2, 40, true, { a: 0.001, b: 0.001, c: 0.003 }),
      rated(3, 80, false, { a: 0.0045, b: 0.001, c: 0.004 }),
    ];
    const b = nameBottleneck(cold, topo)!;
    assert.equal(b.service, 'a', 'a grew 3.5 ms from its warm 1 ms; c only 1 ms from its warm 3 ms');
    assert.match(b.reason, /up from 1\.00 ms at 40 req\/s/);
    // two instances of c, each sidecar at 0.5 cores: 1 core for the service, but no process is full
    const twoInstances: MeshCounters = {
      at: 1000,
      proxies: [0, 1].map((i) => proxyCounters(`c-${i}`, 'c', series('c', 'inbound', 'c', 200, 10, 0.01) + cpu('c', 0.5))),
    };
    const h = hopStep(topo, twoInstances, 1).services[0]!;
    assert.ok(Math.abs(h.sidecarCores! - 1) < 1e-9);
    assert.equal(h.peak?.cores, 0.5);
    assert.doesNotMatch(nameBottleneck([{ step: 1, rate: 10, ok: false, hops: hopStep(topo, twoInstances, 1) }], topo)!.reason, /ran at/);
  });

  it('judges a rate run twice by its last run: a cold first step that missed is not the knee', () => {
    // The trace of a real flaky run (bottleneck-chain, load 5): the first step, cold,
    // missed at 20 req/s with b slow from its cold start; the repeat at 20 passed.
    const cold = rated(1, 20, false, { a: 0.008268, b: 0.011702, c: 0.030084 });
    const steps = [
      cold,
      rated(2, 20, true, { a: 0.002613, b: 0.002997, c: 0.022479 }),
      rated(3, 40, true, { a: 0.002137, b: 0.002584, c: 0.022065 }),
      rated(4, 80, false, { a: 0.003091, b: 0.00242, c: 0.4 }),
    ];
    const b = nameBottleneck(steps, topo)!;
    assert.equal(b.service, 'c');
    assert.equal(b.step, 4);
    assert.match(b.reason, /at 80 req\/s/);
    // With the cold step alone at its rate it would be the knee (and b grew most there):
    // that is what the repeat is for.
    assert.equal(nameBottleneck([cold, rated(2, 10, true, { a: 0.003091, b: 0.00242, c: 0.022879 })], topo)!.step, 1);
  });

  it('shows a TCP service (a database) with its connections and CPU, and names it when its app runs at a full core', () => {
    const withDb: HopTopology = {
      services: [...topo.services.map((x) => (x.name === 'c' ? { ...x, upstreams: ['db'] } : x)), { name: 'db', upstreams: [], protocol: 'tcp' }],
      target: 'a',
      entry: 'trellis-ingress',
    };
    const tcp = (opened: number, active: number): string =>
      `trellis_tcp_connections_total{direction="inbound",source="c",destination="db",proxy_service="db",proxy_id="db-0"} ${opened}\n` +
      `trellis_tcp_connections_active{direction="inbound",source="c",destination="db",proxy_service="db",proxy_id="db-0"} ${active}\n` +
      `trellis_tcp_connections_total{direction="outbound",source="db",destination="x",proxy_service="db",proxy_id="db-0"} 99\n`;
    const withDbAt = (at: number, dbApp: number, inside: { a: number; b: number; c: number }, n: number): MeshCounters => {
      const m = chain(n, inside, { a: 0, b: 0, c: 0 }, at);
      return { at, proxies: [...m.proxies, proxyCounters('db-0', 'db', tcp(4, 4) + cpu('db', (0.1 * at) / 1000, dbApp))] };
    };
    const step = (k: number, rate: number, ok: boolean, dbCores: number, cInside: number): RatedHopStep => {
      const before = withDbAt(0, 0, { a: 0.001, b: 0.001, c: cInside }, 0);
      const after = withDbAt(1000, dbCores, { a: 0.001, b: 0.001, c: cInside }, rate);
      return { step: k, rate, ok, hops: hopStep(withDb, countersDelta(before, after), 1) };
    };
    const low = step(1, 100, true, 0.3, 0.002);
    const db = low.hops.services.find((h) => h.service === 'db')!;
    assert.equal(db.role, 'tcp');
    assert.equal(db.requests, 4, 'connections open (none opened during the step)');
    assert.ok(Math.abs(db.appCores! - 0.3) < 1e-9);
    assert.equal(db.share, undefined);
    assert.match(formatHopLine(low.hops), /db \(TCP\) \(4 connections, app 0\.30 cores, sidecar 0\.10 cores\)/);
    // At the knee the database's app is at a full core while c, its caller, waits on it.
    const knee = step(2, 200, false, 0.97, 0.02);
    const b = nameBottleneck([low, knee], withDb)!;
    assert.equal(b.service, 'db');
    assert.equal(b.role, 'tcp');
    assert.match(b.reason, /its app \(db-0\) ran at 0\.97 cores at 200 req\/s \(4 connections; its callers' time inside includes waiting on it\)/);
    assert.match(
      formatBottleneck({
        steps: new Map([
          [1, low.hops],
          [2, knee.hops],
        ]),
        bottleneck: b,
        appCpu: true,
      }),
      /^bottleneck: db \(TCP\)/,
    );
    // A TCP service with no connections is no hop.
    const idle = { at: 0, proxies: [proxyCounters('db-0', 'db', tcp(0, 0) + cpu('db', 0))] };
    assert.equal(
      hopStep(withDb, idle, 1).services.some((h) => h.service === 'db'),
      false,
    );
  });

  it('names none without data, and says so in the summary and the report', () => {
    const empty: HopStep = { seconds: 1, e2eMs: undefined, e2eRequests: 0, clientMs: undefined, services: [] };
    assert.equal(nameBottleneck([{ step: 1, rate: 10, ok: true, hops: empty }], topo), undefined);
    assert.match(formatBottleneck({ steps: new Map(), bottleneck: undefined, appCpu: false }), /^bottleneck: not named/);
    const steps = [rated(1, 20, true, { a: 0.001, b: 0.001, c: 0.02 }), rated(2, 40, false, { a: 0.001, b: 0.001, c: 0.2 })];
    const bottleneck = nameBottleneck(steps, topo);
    const hops = { steps: new Map(steps.map((s) => [s.step, s.hops])), bottleneck, appCpu: true };
    assert.match(formatBottleneck(hops), /^bottleneck: c \(time inside 200 ms per request at 40 req\/s/);
    const lat = { count: 10, p50: 1000, p90: 1000, p99: 1000, p999: 1000, max: 1000, mean: 1000 };
    const errors = { total: 0, connect: 0, reset: 0, timeout: 0, protocol: 0, status: {} };
    const r: SweepResult = {
      steps: steps.map((s) => ({
        step: s.step,
        phase: 'exponential',
        rate: s.rate,
        ok: s.ok,
        success: 1,
        reasons: s.ok ? [] : ['p99'],
        measure: { rate: s.rate, achievedRps: s.rate, scheduled: 10, completed: 10, interrupted: false, errors, latencyUs: lat },
      })),
      saturation: 20,
      firstBad: 40,
      stoppedBy: 'precision',
    };
    const html = renderSweepHtml(
      r,
      {
        target: 'http://127.0.0.1:1/',
        method: 'GET',
        protocol: 'http/1.1',
        connections: 1,
        stepDurationMs: 1000,
        warmupMs: 0,
        slo: { p99Ms: 100, minSuccess: 0.999, minAchieved: 0.95 },
        startedAt: new Date(0),
      },
      1000,
      hops,
    );
    assert.match(html, /bottleneck: c/);
    assert.equal(html.match(/<table class="hops">/g)?.length, 2, 'a table per step');
  });
});
