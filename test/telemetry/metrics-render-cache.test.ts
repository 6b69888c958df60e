// A scrape re-renders only the HTTP series that saw a request since the last scrape
// (metrics.ts keeps each series' lines with the count they were rendered at). The text
// must be exactly what rendering everything anew gives, after any mix of scrapes and
// requests, in both forms; and a cached series' new exemplar must show at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyMetrics, type HttpLabels } from '../../src/telemetry/metrics.js';
import { parsePrometheus } from '../../src/telemetry/prometheus-text.js';

const route = (i: number): HttpLabels => ({
  direction: 'outbound',
  source: 'web',
  destination: 'api',
  destinationVersion: 'v1',
  route: `default/r${i}/rule/0`,
});

/** The observations of step `k`: a few routes, statuses and latencies, one gRPC call. */
function step(m: ProxyMetrics, k: number): void {
  for (let i = 0; i < 6; i++) if ((i + k) % 3 !== 0) m.observeHttp(route(i), i === 2 ? 503 : 200, 0.0007 * (i + 1) * (k + 1), i === 4 ? '14' : '');
}

test('the text after scrapes and requests in any order is what a fresh render of the same requests gives', () => {
  const scraped = new ProxyMetrics({ service: 'web', id: 'web-0' });
  for (let k = 0; k < 6; k++) {
    step(scraped, k);
    // Scraped once or twice between steps, in both forms (each has its own cache).
    const text = scraped.httpText();
    scraped.httpText(true);
    if (k % 2 === 0) assert.equal(scraped.httpText(), text, 'a scrape with no request between gives the same text');
    const fresh = new ProxyMetrics({ service: 'web', id: 'web-0' });
    for (let j = 0; j <= k; j++) step(fresh, j);
    assert.equal(text, fresh.httpText(), `after step ${k}`);
  }
});

test('every histogram stays valid: cumulative buckets ending in +Inf = count, one counter per series', () => {
  const m = new ProxyMetrics({ service: 'web', id: 'web-0' });
  for (let k = 0; k < 4; k++) {
    step(m, k);
    const samples = parsePrometheus(m.httpText());
    const counters = samples.filter((s) => s.name === 'trellis_http_requests_total');
    for (const c of counters) {
      const same = (s: { labels: Readonly<Record<string, string>> }): boolean => Object.entries(c.labels).every(([k2, v]) => s.labels[k2] === v);
      const buckets = samples.filter((s) => s.name === 'trellis_http_request_duration_seconds_bucket' && same(s));
      assert.equal(buckets.length, 22);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'cumulative');
      assert.equal(buckets.at(-1)!.labels.le, '+Inf');
      assert.equal(buckets.at(-1)!.value, c.value);
      assert.equal(samples.find((s) => s.name === 'trellis_http_request_duration_seconds_count' && same(s))?.value, c.value);
    }
  }
});

test('a sampled request on a series already rendered shows its exemplar in the next OpenMetrics scrape', () => {
  const m = new ProxyMetrics({ service: 'web', id: 'web-0' });
  m.observeHttp(route(0), 200, 0.004);
  assert.doesNotMatch(m.httpText(true), /trace_id/);
  m.observeHttp(route(0), 200, 0.004, '', '0af7651916cd43dd8448eb211c80319c');
  assert.match(m.httpText(true), /le="0\.005",[^\n]*\} 2 # \{trace_id="0af7651916cd43dd8448eb211c80319c"\} 0\.004 /);
  assert.doesNotMatch(m.httpText(), /trace_id/, 'Prometheus text carries no exemplars');
});
