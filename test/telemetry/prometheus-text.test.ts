// The one reader of Prometheus text exposition: names, labels with escapes, values,
// and what it skips (comments, lines that do not parse, NaN). Checked against what a
// sidecar's own ProxyMetrics prints, since that is what it reads in practice.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrometheus } from '../../src/telemetry/prometheus-text.js';
import { ProxyMetrics } from '../../src/telemetry/metrics.js';

describe('Prometheus text', () => {
  it('parses names, labels (with escapes), values, and skips comments and bad lines', () => {
    const s = parsePrometheus(
      [
        '# HELP x a counter',
        '# TYPE x counter',
        '',
        'x_total{a="1",b="say \\"hi\\"\\\\n",c="line\\nbreak"} 42',
        'up 1 1700000000000',
        'inf_gauge{} +Inf',
        'not a sample line',
        'broken{a=1} 3',
      ].join('\n'),
    );
    assert.deepEqual(s, [
      { name: 'x_total', labels: { a: '1', b: 'say "hi"\\n', c: 'line\nbreak' }, value: 42 },
      { name: 'up', labels: {}, value: 1 },
      { name: 'inf_gauge', labels: {}, value: Infinity },
    ]);
    assert.deepEqual(
      parsePrometheus('x 1\ny 2\n', (n) => n === 'y').map((p) => p.name),
      ['y'],
    );
  });

  it('takes a trailing comma, braces and commas inside label values, exponents, -Inf and CRLF line ends', () => {
    const s = parsePrometheus('gc_count{gc="Copy",} 104.0\r\nodd{path="a,b}",q="} 5"} 1.5e+3\r\nlow -Inf\r\n');
    assert.deepEqual(s, [
      { name: 'gc_count', labels: { gc: 'Copy' }, value: 104 },
      { name: 'odd', labels: { path: 'a,b}', q: '} 5' }, value: 1500 },
      { name: 'low', labels: {}, value: -Infinity },
    ]);
  });

  it('leaves out samples whose value is not a number', () => {
    assert.deepEqual(parsePrometheus('a NaN\nb{x="1"} twelve\nc 3\n'), [{ name: 'c', labels: {}, value: 3 }]);
  });

  it('reads back what a sidecar prints: every request series and histogram bucket', () => {
    const m = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
    const labels = { direction: 'outbound', source: 'frontend', destination: 'backend', destinationVersion: 'v2', route: 'default/split/rule/0' } as const;
    for (let i = 0; i < 3; i++) m.observeHttp(labels, 200, 0.004);
    m.observeHttp(labels, 503, 0.2);
    const samples = parsePrometheus(m.httpText());
    const requests = samples.filter((s) => s.name === 'trellis_http_requests_total');
    assert.deepEqual(requests.map((s) => [s.labels.status, s.labels.destination_version, s.value]).sort(), [
      ['200', 'v2', 3],
      ['503', 'v2', 1],
    ]);
    const inf = samples.filter((s) => s.name === 'trellis_http_request_duration_seconds_bucket' && s.labels.le === '+Inf');
    assert.equal(
      inf.reduce((n, s) => n + s.value, 0),
      4,
    );
  });
});
