// HTTPRoute rule timeouts through a real sidecar pair: timeouts.backendRequest bounds
// each attempt (504 timeout), timeouts.request bounds the whole exchange with its
// retries (504 request-timeout), and a route without timeouts is left alone.
// Assertions are on statuses, tokens and counts, never on measured time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;
const hits = new Map<string, number>();

const rule = (name: string, prefix: string, extra: Partial<RouteEntry>): RouteEntry => ({
  name: `default/api/${name}`, match: { path: { type: 'PathPrefix', value: prefix } }, backends: [{ backend: 'api', weight: 1 }], ...extra,
});

before(async () => {
  app = await listenHttp((req, res) => {
    const path = req.url!.split('?')[0]!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    // /slow/* never answers: only a timeout (or the test's cleanup) ends it.
    if (path.startsWith('/slow')) return;
    // /once-slow hangs the first time only.
    if (path === '/once-slow' && hits.get(path) === 1) return;
    res.end('ok');
  });
  inbound = await startInbound('api', 'v1', app.port);
  const snap: UpstreamSnapshot = {
    service: 'api', protocol: 'http',
    routes: [
      rule('attempt', '/slow/attempt', { timeouts: { backendRequestMs: 150 } }),
      rule('whole', '/slow/whole', {
        timeouts: { requestMs: 250, backendRequestMs: 100 },
        retry: { codes: [], attempts: 5, backoffMs: 10, nonIdempotent: false, maxBodyBytes: 65536 },
      }),
      rule('once', '/once-slow', {
        timeouts: { backendRequestMs: 150 },
        retry: { codes: [], attempts: 1, backoffMs: 10, nonIdempotent: false, maxBodyBytes: 65536 },
      }),
      rule('fast', '/fast', { timeouts: { requestMs: 300, backendRequestMs: 200 } }),
      rule('none', '/', {}),
    ],
    backends: { api: { name: 'api', endpoints: [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
  };
  outbound = await startOutbound('web', { api: snap });
  port = outbound.addresses.upstreams.api!.port;
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

test('timeouts.backendRequest answers 504 with the timeout token', async () => {
  const r = await get(port, '/slow/attempt');
  assert.equal(r.status, 504);
  assert.equal(r.headers['trellis-error'], 'timeout');
  assert.equal(hits.get('/slow/attempt'), 1, 'no retry policy: one attempt');
});

test('timeouts.request bounds the whole exchange, retries included', async () => {
  const r = await get(port, '/slow/whole');
  assert.equal(r.status, 504);
  assert.equal(r.headers['trellis-error'], 'request-timeout');
  const attempts = hits.get('/slow/whole') ?? 0;
  // Five retries were allowed; the deadline ended the exchange before all six attempts.
  assert.ok(attempts >= 1 && attempts < 6, `attempts: ${attempts}`);
});

test('an attempt that timed out is retried under a retry policy, and the retry\'s answer is the response', async () => {
  const r = await get(port, '/once-slow');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok');
  assert.equal(hits.get('/once-slow'), 2);
  assert.match(await metricsText(outbound), /trellis_http_retries_total\{destination="api",route="default\/api\/once",reason="timeout",[^}]*\} 1\n/);
});

test('a request answered in time is not affected by the timeouts', async () => {
  for (let i = 0; i < 5; i++) {
    const r = await get(port, '/fast');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
  }
});

test('timeouts are counted in the metrics by kind', async () => {
  const text = await metricsText(outbound);
  assert.match(text, /trellis_http_timeouts_total\{destination="api",route="default\/api\/attempt",timeout="attempt",[^}]*\} 1/);
  assert.match(text, /trellis_http_timeouts_total\{destination="api",route="default\/api\/whole",timeout="request",[^}]*\} 1/);
});
