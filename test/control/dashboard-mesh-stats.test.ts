// The dashboard's reading of the proxies' metrics (the real sidecars' are read in
// e2e/dashboard.test.ts): rates over the window from counter differences, a counter that
// went down (a restarted proxy) counted from zero, at most one read per interval however
// many ask at once, an answer over the size limit counted as failed, not buffered, and
// an answer that came after the read's timeout counted at the next read, not lost.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MeshStats } from '../../src/control/dashboard/mesh-stats.js';
import { eventually } from '../helpers/eventually.js';
import type { MeshModel, ProxyState } from '../../src/control/model.js';

let server: http.Server;
let port: number;
let reads = 0;
let requests = 0;
let huge = false;
let denied = 0;
let limited = 0;
/** While set, /metrics answers are held (each with the text of when it was asked) until `release()`. */
let holding = false;
const held: (() => void)[] = [];
function release(): void {
  holding = false;
  for (const answer of held.splice(0)) answer();
}

function metricsText(): string {
  const labels =
    'direction="outbound",source="client",destination="shop",destination_version="v1",route="default/r/rule/0",status="200",classification="success"';
  const lines = [
    '# TYPE trellis_http_requests_total counter',
    `trellis_http_requests_total{${labels}} ${requests}`,
    `trellis_http_request_duration_seconds_bucket{${labels},le="0.005"} ${requests}`,
    `trellis_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${requests}`,
    '# TYPE trellis_authz_denials_total counter',
    `trellis_authz_denials_total{policy="default/backend-from-frontend",action="ALLOW",protocol="http"} ${denied}`,
    `trellis_authz_denials_total{policy="default/postgres-from-backend",action="ALLOW",protocol="tcp"} ${denied * 2}`,
    '# TYPE trellis_http_rate_limited_total counter',
    `trellis_http_rate_limited_total{policy="default/api-limits",limit="per-caller"} ${limited}`,
  ];
  return `${lines.join('\n')}\n${huge ? '#'.repeat(2048) : ''}`;
}

before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/metrics') reads++;
    if (holding && req.url === '/metrics') {
      const text = metricsText();
      held.push(() => res.end(text));
      return;
    }
    res.end(req.url === '/metrics' ? metricsText() : JSON.stringify({ endpoints: [], breakers: [] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((r) => server.close(() => r())));

function model(): MeshModel {
  const proxy = { id: 'client-0', service: 'client', version: 'default', kind: 'sidecar', connected: true, info: { admin: { host: '127.0.0.1', port } } };
  return { proxies: () => [proxy as unknown as ProxyState] } as unknown as MeshModel;
}

test('rates over the window, resets counted from zero, one read per interval, oversized answers refused', async () => {
  let now = 0;
  const stats = new MeshStats({ model: model(), now: () => now, minIntervalMs: 1000, windowMs: 10_000, maxBodyBytes: 1024 });
  requests = 100;
  await stats.view(); // baseline
  now = 2000;
  requests = 140;
  const [a, b] = await Promise.all([stats.view(), stats.view()]);
  assert.equal(reads, 2, 'two askers at once share one read');
  assert.deepEqual(a, b);
  const edge = a.edges.find((e) => e.source === 'client' && e.destination === 'shop');
  assert.equal(edge?.rps, 20, '40 requests in 2 s');
  assert.equal(edge?.successRate, 1);
  assert.equal(edge?.p99Ms, 4.95);
  assert.equal(a.routes[0]?.route, 'default/r/rule/0');
  now = 2500;
  await stats.view();
  assert.equal(reads, 2, 'no read within the minimum interval');
  // The proxy restarted: its counter starts again from 0.
  now = 4000;
  requests = 10;
  const c = await stats.view();
  assert.equal(c.edges[0]?.requests, 50, '40 + 10 in the window');
  assert.equal(c.edges[0]?.total, 50);
  huge = true;
  now = 6000;
  const d = await stats.view();
  assert.deepEqual(d.proxiesFailed, ['client-0']);
  assert.equal(d.proxiesRead, 0);
});

test('authorization denials by service and policy (HTTP and TCP) and rate-limit refusals by limit, from the refusing sidecars', async () => {
  huge = false;
  let now = 100_000;
  const stats = new MeshStats({ model: model(), now: () => now, minIntervalMs: 1000, windowMs: 10_000, maxBodyBytes: 1 << 20 });
  denied = 3;
  limited = 1;
  await stats.view(); // baseline
  now += 2000;
  denied = 8;
  limited = 4;
  const v = await stats.view();
  assert.deepEqual(v.authzDenials, [
    { service: 'client', policy: 'default/backend-from-frontend', protocol: 'http', count: 5, total: 5 },
    { service: 'client', policy: 'default/postgres-from-backend', protocol: 'tcp', count: 10, total: 10 },
  ]);
  assert.deepEqual(v.rateLimited, [{ service: 'client', policy: 'default/api-limits', limit: 'per-caller', count: 3, total: 3 }]);
});

test('a proxy that answers after the timeout is counted at the next read: its first read stays the baseline', async () => {
  huge = false;
  let now = 200_000;
  const stats = new MeshStats({ model: model(), now: () => now, minIntervalMs: 1000, windowMs: 10_000, maxBodyBytes: 1 << 20, timeoutMs: 50 });
  requests = 100;
  holding = true;
  const first = await stats.view(); // the baseline read times out
  assert.deepEqual(first.proxiesFailed, ['client-0']);
  const readsBefore = reads;
  release(); // the proxy answers late, with its counters of when it was asked (100)
  await eventually(() => stats.waitingReads === 0);
  now += 2000;
  requests = 140;
  const second = await stats.view();
  assert.equal(reads, readsBefore, 'the late answer is this read of the proxy: no second request while one is unanswered');
  assert.deepEqual(second.proxiesFailed, []);
  now += 2000;
  const third = await stats.view();
  const edge = third.edges.find((e) => e.source === 'client' && e.destination === 'shop');
  assert.equal(edge?.total, 40, 'the 40 requests after the late baseline are counted (dropped, the baseline was 140 and none were)');
});
