// How a canary step is judged: deltas of the callers' counters and histogram buckets
// over the interval (never totals since start), the p99 estimated as Prometheus does,
// and a verdict that names the metric, its value and the limit. The metrics text comes
// from the proxies' own ProxyMetrics, so the parsing is checked against what they print.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { histogramQuantile, judge, versionReading, windowStats, type CanaryLimits } from '../../src/canary/judge.js';
import { ProxyMetrics, type HttpLabels } from '../../src/telemetry/metrics.js';
import { BalancingState } from '../../src/proxy/balancer/balancing.js';
import type { CompiledBackend } from '../../src/proxy/routing/router.js';

const toV2: HttpLabels = { direction: 'outbound', source: 'frontend', destination: 'backend', destinationVersion: 'v2', route: 'default/split/rule/0' };
const limits: CanaryLimits = { maxErrorRate: 0.01, maxP99Ms: 200, minRequests: 20 };

function observe(m: ProxyMetrics, labels: HttpLabels, status: number, seconds: number, times: number): void {
  for (let i = 0; i < times; i++) m.observeHttp(labels, status, seconds);
}

test('a window counts only what happened between its two readings, for the version asked', () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  observe(m, toV2, 500, 0.01, 50); // before the window: must not count
  const before = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  observe(m, toV2, 200, 0.004, 95);
  observe(m, toV2, 503, 0.004, 3);
  observe(m, toV2, 0, 0.004, 2); // no answer at all
  observe(m, { ...toV2, destinationVersion: 'v1' }, 500, 0.004, 40); // another version
  observe(m, { ...toV2, direction: 'inbound' }, 500, 0.004, 40); // not a caller's view
  const after = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  const s = windowStats(before, after);
  assert.equal(s.requests, 100);
  assert.equal(s.errors, 5);
  assert.equal(s.buckets[s.buckets.length - 1]![0], Infinity);
  assert.equal(s.buckets[s.buckets.length - 1]![1], 100);
  assert.deepEqual(judge(s, limits), { kind: 'breach', metric: 'error rate', reason: 'error rate 5% (5 of 100 requests failed) is above --max-error-rate 1%' });
});

test('callers add up; a proxy that restarted or appeared during the window counts from zero', () => {
  const a = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  observe(a, toV2, 200, 0.004, 30);
  const before = versionReading([{ id: 'frontend-0', text: a.httpText() }], 'backend', 'v2');
  const restarted = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  observe(restarted, toV2, 200, 0.004, 10);
  const gateway = new ProxyMetrics({ service: 'trellis-ingress', id: 'trellis-ingress' });
  observe(gateway, toV2, 200, 0.004, 15);
  const after = versionReading(
    [
      { id: 'frontend-0', text: restarted.httpText() },
      { id: 'trellis-ingress', text: gateway.httpText() },
    ],
    'backend',
    'v2',
  );
  assert.equal(windowStats(before, after).requests, 25);
});

test('p99 is interpolated within its bucket, as histogram_quantile does', () => {
  assert.equal(histogramQuantile(0.99, []), undefined);
  assert.equal(
    histogramQuantile(0.99, [
      [0.1, 0],
      [0.25, 0],
      [Infinity, 0],
    ]),
    undefined,
  );
  // 100 observations, all in (0.1, 0.25]: the 99th is 99% of the way through that bucket.
  assert.ok(
    Math.abs(
      histogramQuantile(0.99, [
        [0.05, 0],
        [0.1, 0],
        [0.25, 100],
        [Infinity, 100],
      ])! - 0.2485,
    ) < 1e-9,
  );
  // Beyond the highest finite bound: that bound.
  assert.equal(
    histogramQuantile(0.99, [
      [5, 10],
      [10, 10],
      [Infinity, 100],
    ]),
    10,
  );
});

test('slow answers breach --max-p99 with the value and the limit', () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const before = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  observe(m, toV2, 200, 0.35, 40);
  const s = windowStats(before, versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2'));
  assert.deepEqual(judge(s, limits), {
    kind: 'breach',
    metric: 'p99',
    reason: "p99 latency 399 ms (in the 300 ms to 400 ms bucket of the sidecars' histograms, over 40 requests) is above --max-p99 200 ms",
  });
  assert.deepEqual(judge(s, { ...limits, maxP99Ms: 1000 }), { kind: 'pass' });
});

test('a limit on a bucket bound is judged exactly: 120 ms answers pass --max-p99 200ms, 210 ms ones do not', () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const at = (): ReturnType<typeof versionReading> => versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  const start = at();
  observe(m, toV2, 200, 0.12, 100);
  assert.deepEqual(judge(windowStats(start, at()), limits), { kind: 'pass' });
  const later = at();
  observe(m, toV2, 200, 0.21, 100);
  assert.equal(judge(windowStats(later, at()), limits).kind, 'breach');
});

test('fewer requests than --min-requests is not a pass, whatever they show', () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const before = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  observe(m, toV2, 200, 0.001, 19);
  const s = windowStats(before, versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2'));
  assert.deepEqual(judge(s, limits), { kind: 'too-little-traffic' });
  assert.deepEqual(judge(windowStats(before, before), limits), { kind: 'too-little-traffic' });
  assert.deepEqual(judge(s, { ...limits, minRequests: 19 }), { kind: 'pass' });
});

test('a gRPC call that ends in an error status counts as an error, though it was answered with HTTP 200', () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const before = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  for (let i = 0; i < 90; i++) m.observeHttp(toV2, 200, 0.004, '0');
  for (let i = 0; i < 10; i++) m.observeHttp(toV2, 200, 0.004, '14'); // UNAVAILABLE
  const after = versionReading([{ id: 'frontend-0', text: m.httpText() }], 'backend', 'v2');
  const s = windowStats(before, after);
  assert.equal(s.requests, 100);
  assert.equal(s.errors, 10);
});

// When outlier detection ejects the canary's only instance, its callers send its share to
// the stable version (failover): those requests are never the canary's, and the canary
// used to see "too little traffic to judge" where its instance was failing. The metrics
// come from a real BalancingState, as a sidecar prints them.
function shopBalancing(m: ProxyMetrics): { balancing: BalancingState; v2: CompiledBackend } {
  const balancing = new BalancingState();
  m.watchBalancing(balancing);
  const ep = (id: string, version: string) => ({ id, host: '127.0.0.1', port: 1, version });
  const backends = balancing.backendsFor({
    service: 'backend',
    protocol: 'http',
    routes: [],
    backends: {
      backend: { name: 'backend', endpoints: [ep('backend-v1-0', 'v1'), ep('backend-v2-0', 'v2')] },
      'backend-v1': { name: 'backend-v1', endpoints: [ep('backend-v1-0', 'v1')], failover: 'backend' },
      'backend-v2': { name: 'backend-v2', endpoints: [ep('backend-v2-0', 'v2')], failover: 'backend' },
    },
  });
  return { balancing, v2: backends.get('backend-v2')! };
}

const reading = async (m: ProxyMetrics): Promise<ReturnType<typeof versionReading>> =>
  versionReading([{ id: 'frontend-0', text: await m.text() }], 'backend', 'v2');

test("an ejection of the canary's instance fails the step, whatever the traffic, and the reason says so", async () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const { v2 } = shopBalancing(m);
  const before = await reading(m);
  // Five 500s in a row: ejected (Envoy's consecutive5xx); every request for v2 after that goes to v1.
  observe(m, toV2, 500, 0.004, 5);
  for (let i = 0; i < 5; i++) v2.outliers!.report('backend-v2-0', 'server-error', performance.now());
  v2.failovers!.count += 70;
  const s = windowStats(before, await reading(m));
  assert.deepEqual(
    { requests: s.requests, errors: s.errors, failovers: s.failovers, ejections: s.ejections },
    { requests: 5, errors: 5, failovers: 70, ejections: { 'consecutive-5xx': 1 } },
  );
  assert.deepEqual(judge(s, limits), {
    kind: 'breach',
    metric: 'ejection',
    reason:
      "outlier detection in the callers' sidecars ejected the version's instances 1 time (consecutive-5xx); 75 of 75 requests failed: 5 answered with errors, 70 sent to other versions because no instance could take them",
  });
});

test('requests for the canary sent to other versions count as its failed requests, not as missing traffic', async () => {
  const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const { v2 } = shopBalancing(m);
  // Ejected before the window began: in the window, only failovers.
  for (let i = 0; i < 5; i++) v2.outliers!.report('backend-v2-0', 'server-error', performance.now());
  const before = await reading(m);
  v2.failovers!.count += 40;
  observe(m, { ...toV2, destinationVersion: 'v1' }, 200, 0.004, 40); // v1 answered them: not v2's
  const s = windowStats(before, await reading(m));
  assert.deepEqual({ requests: s.requests, failovers: s.failovers, ejections: s.ejections }, { requests: 0, failovers: 40, ejections: {} });
  assert.deepEqual(judge(s, limits), {
    kind: 'breach',
    metric: 'error rate',
    reason:
      'error rate 100% (40 of 40 requests failed: 0 answered with errors, 40 sent to other versions because no instance could take them) is above --max-error-rate 1%',
  });
  // Failovers of another version's backend are not the canary's.
  const other = await reading(m);
  observe(m, toV2, 200, 0.004, 30);
  const s2 = windowStats(other, await reading(m));
  assert.equal(s2.failovers, 0);
  assert.deepEqual(judge(s2, limits), { kind: 'pass' });
});
