// The label values of the HTTP golden metrics are bounded whatever an app answers: an
// HTTP status outside 100-599 and a grpc-status that is not one of gRPC's 17 codes each
// collapse into "other", so an app (or a peer) can't grow /metrics without bound.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isError } from '../../src/canary/judge.js';
import { ProxyMetrics, requestFailed, type HttpLabels } from '../../src/telemetry/metrics.js';

const labels: HttpLabels = { direction: 'outbound', source: 'web', destination: 'api', destinationVersion: 'v1', route: 'r' };
const requestSeries = (m: ProxyMetrics): string[] =>
  m
    .httpText()
    .split('\n')
    .filter((l) => l.startsWith('trellis_http_requests_total{'));

describe('bounded HTTP metric labels', () => {
  it('HTTP statuses outside 100-599 share one series, status="other"', () => {
    const m = new ProxyMetrics({ service: 'web', id: 'web-0' });
    for (let s = 600; s < 1000; s++) m.observeHttp(labels, s, 0.001);
    for (const s of [-1, 1, 99, 1e6, 1.5, NaN]) m.observeHttp(labels, s, 0.001);
    m.observeHttp(labels, 200, 0.001);
    m.observeHttp(labels, 599, 0.001);
    m.observeHttp(labels, 0, 0.001); // no response at all keeps its own value
    const lines = requestSeries(m);
    assert.deepEqual(lines.map((l) => /status="([^"]*)"/.exec(l)![1]).sort(), ['0', '200', '599', 'other']);
    assert.match(lines.find((l) => l.includes('status="other"'))!, /\} 406$/);
  });

  it('grpc-status values other than gRPC\'s 17 codes share one series, grpc_status="other"', () => {
    const m = new ProxyMetrics({ service: 'web', id: 'web-0' });
    for (let i = 0; i < 1000; i++) m.observeHttp(labels, 200, 0.001, `evil-${i}`);
    for (const g of ['17', '-1', '00', '1.0', ' 1', '99999']) m.observeHttp(labels, 200, 0.001, g);
    for (let g = 0; g <= 16; g++) m.observeHttp(labels, 200, 0.001, String(g));
    const codes = requestSeries(m).map((l) => /grpc_status="([^"]*)"/.exec(l)![1]);
    assert.equal(codes.length, 18);
    assert.ok(codes.includes('other') && codes.includes('0') && codes.includes('16'));
  });

  it('the success rule counts "other" as a failure', () => {
    assert.equal(requestFailed(Number('other'), ''), true);
    assert.equal(isError('other'), true);
    assert.equal(isError('200', 'other'), true);
    assert.equal(isError('200', '0'), false);
    assert.equal(isError('404'), false);
  });
});
