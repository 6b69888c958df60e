// A RateLimitPolicy through real sidecars: a caller's outbound sidecar → the service's
// inbound sidecar (which holds the limits) → its app, one suite over HTTP/1.1 and HTTP/2.
// Over the limit the inbound sidecar answers 429 rate-limited with Retry-After and the
// IETF RateLimit-Policy / RateLimit fields, and the app sees nothing; allowed responses
// carry the RateLimit fields when the policy asks; a gRPC call gets RESOURCE_EXHAUSTED;
// refusals are counted by policy and limit.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import type { RateLimitsSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { openClient, WIRE_PROTOCOLS } from '../helpers/client.js';
import { h2Request } from '../helpers/h2.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
const reached: string[] = [];

const RATE_LIMITS: RateLimitsSnapshot = {
  limits: [
    {
      id: 'default/api-limits/per-case',
      policy: 'default/api-limits',
      name: 'per-case',
      requests: 3,
      intervalMs: 60_000,
      burst: 3,
      key: { header: 'x-case' },
      maxKeys: 100,
      responseHeaders: true,
    },
  ],
};

before(async () => {
  app = await listenHttp((req, res) => {
    reached.push(String(req.headers['x-case']));
    res.end('ok');
  });
  inbound = await startInbound('api', 'v1', app.port);
  inbound.apply({ version: 2, service: 'api', inboundProtocol: 'http', upstreams: {}, meshServices: ['api', 'web'], rateLimits: RATE_LIMITS });
  const endpoints = [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
  outbound = await startOutbound('web', { api: { service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints } } } });
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

for (const protocol of WIRE_PROTOCOLS) {
  test(`${protocol}: over the limit the inbound sidecar answers 429 with Retry-After and the RateLimit fields`, async () => {
    const client = openClient(protocol, outbound.addresses.upstreams.api!.port);
    const key = `case-${protocol}`;
    try {
      for (let i = 0; i < 3; i++) {
        const ok = await client.request('GET', '/items', { 'x-case': key });
        assert.equal(ok.status, 200, ok.body);
        assert.equal(ok.headers['ratelimit-policy'], '"per-case";q=3;w=60');
        assert.match(String(ok.headers.ratelimit), new RegExp(`^"per-case";r=${2 - i};t=\\d+$`));
      }
      const refused = await client.request('GET', '/items', { 'x-case': key });
      assert.equal(refused.status, 429);
      assert.equal(refused.error, 'rate-limited');
      const retryAfter = Number(refused.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 20, `Retry-After ${refused.headers['retry-after']}: one token per 20 s`);
      assert.equal(refused.headers['ratelimit-policy'], '"per-case";q=3;w=60');
      assert.equal(refused.headers.ratelimit, `"per-case";r=0;t=${retryAfter}`);
      assert.equal(JSON.parse(refused.body).code, 'TRELLIS_E_RATE_LIMITED');
      assert.equal(reached.filter((k) => k === key).length, 3, 'the refused request never reached the app');
      // Another header value has its own bucket.
      assert.equal((await client.request('GET', '/items', { 'x-case': `${key}-other` })).status, 200);
    } finally {
      await client.close();
    }
  });
}

test('a gRPC call over the limit gets RESOURCE_EXHAUSTED (trailers-only), and refusals are counted by policy and limit', async () => {
  const session = http2.connect(`http://127.0.0.1:${inbound.addresses.inbound!.port}`);
  try {
    const call = (): ReturnType<typeof h2Request> =>
      h2Request(session, { ':method': 'POST', ':path': '/pkg.Svc/Do', 'content-type': 'application/grpc', 'x-case': 'grpc', 'trellis-source': 'web' }, '');
    for (let i = 0; i < 3; i++) await call();
    const r = await call();
    assert.equal(r.status, 200);
    assert.equal(r.headers['grpc-status'], '8');
    assert.equal(r.headers['trellis-error'], 'rate-limited');
    assert.ok(Number(r.headers['retry-after']) >= 1);
  } finally {
    session.close();
  }
  const text = await inbound.metrics.text();
  const line = text.split('\n').find((l) => l.startsWith('trellis_http_rate_limited_total{') && l.includes('policy="default/api-limits"'));
  assert.ok(line?.includes('limit="per-case"'), text.slice(0, 400));
  assert.ok(line !== undefined);
  assert.ok(Number(line.split(' ').pop()) >= 3, line);
  assert.match(text, /trellis_rate_limit_keys\{policy="default\/api-limits",limit="per-case"[^}]*\} [4-9]/);
  assert.doesNotMatch(text, /case-HTTP/, 'no header value becomes a label');
});
