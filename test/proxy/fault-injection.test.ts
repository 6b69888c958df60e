// FaultInjection through a real sidecar pair: aborts and delays hit their share of
// requests within a tolerance, an abort carries the fault-abort token and never
// reaches the app, a gRPC abort is a trailers-only 200, and a fault on the Service
// covers a service without routes. Delays are told apart by a request timeout shorter
// than the delay (504 request-timeout), never by measuring time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { FaultConfig, RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { runModuleScript } from '../helpers/module-child.js';
import { closeServer, get, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
let apiPort: number;
let otherPort: number;
const hits = new Map<string, number>();
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

const rule = (name: string, prefix: string, extra: Partial<RouteEntry>): RouteEntry => ({
  name: `default/api/${name}`,
  match: { path: { type: 'PathPrefix', value: prefix } },
  backends: [{ backend: 'api', weight: 1 }],
  ...extra,
});

const fault = (f: Omit<FaultConfig, 'policy'>): FaultConfig => ({ policy: 'default/chaos', ...f });

before(async () => {
  app = await listenHttp((req, res) => {
    const path = req.url!.split('?')[0]!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    res.end('ok');
  });
  inbound = await startInbound('api', 'v1', app.port);
  const endpoints = [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [
      rule('abort', '/abort', { fault: fault({ abort: { httpStatus: 503, percent: 30 } }) }),
      rule('delay', '/delay', { timeouts: { requestMs: 100 }, fault: fault({ delay: { ms: 5000, percent: 40 } }) }),
      rule('grpc', '/grpc', { fault: fault({ abort: { grpcStatus: 14, percent: 100 } }) }),
      rule('none', '/', {}),
    ],
    backends: { api: { name: 'api', endpoints } },
  };
  // A service with no routes and a FaultInjection on the Service itself.
  const other: UpstreamSnapshot = {
    service: 'other',
    protocol: 'http',
    routes: [],
    fault: fault({ abort: { httpStatus: 418, percent: 100 } }),
    backends: { other: { name: 'other', endpoints } },
  };
  outbound = await startOutbound('web', { api, other });
  apiPort = outbound.addresses.upstreams.api!.port;
  otherPort = outbound.addresses.upstreams.other!.port;
});

after(async () => {
  agent.destroy();
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

/** Sends `n` requests, 16 at a time; the statuses and trellis-error tokens seen. */
async function many(port: number, path: string, n: number): Promise<{ status: number; token: string | undefined }[]> {
  const out: { status: number; token: string | undefined }[] = [];
  for (let i = 0; i < n; i += 16) {
    const batch = await Promise.all(Array.from({ length: Math.min(16, n - i) }, () => get(port, path, {}, agent)));
    for (const r of batch) out.push({ status: r.status, token: r.headers['trellis-error'] as string | undefined });
  }
  return out;
}

/** 3.5 standard deviations of a binomial share: a false failure about once in 2000 runs. */
const tolerance = (p: number, n: number): number => 3.5 * Math.sqrt((p * (1 - p)) / n);

test('an abort fault answers its status on its share of requests, which never reach the app', async () => {
  const n = 400;
  const results = await many(apiPort, '/abort', n);
  const aborted = results.filter((r) => r.status === 503);
  for (const r of aborted) assert.equal(r.token, 'fault-abort');
  assert.equal(results.filter((r) => r.status === 200).length + aborted.length, n);
  const share = aborted.length / n;
  assert.ok(Math.abs(share - 0.3) <= tolerance(0.3, n), `aborted share ${share}`);
  assert.equal(hits.get('/abort'), n - aborted.length, 'aborted requests are not forwarded');
  const text = await metricsText(outbound);
  assert.match(text, new RegExp(`trellis_http_faults_total\\{destination="api",route="default/api/abort",fault="abort",[^}]*\\} ${aborted.length}\\n`));
});

test('a delay fault holds its share of requests (seen as a request timeout shorter than the delay)', async () => {
  const n = 200;
  const results = await many(apiPort, '/delay', n);
  const delayed = results.filter((r) => r.status === 504);
  for (const r of delayed) assert.equal(r.token, 'request-timeout');
  assert.equal(results.filter((r) => r.status === 200).length + delayed.length, n);
  const share = delayed.length / n;
  assert.ok(Math.abs(share - 0.4) <= tolerance(0.4, n), `delayed share ${share}`);
  const text = await metricsText(outbound);
  assert.match(text, new RegExp(`trellis_http_faults_total\\{destination="api",route="default/api/delay",fault="delay",[^}]*\\} ${delayed.length}\\n`));
});

test('a gRPC abort is a trailers-only response: 200, application/grpc, grpc-status', async () => {
  const r = await get(apiPort, '/grpc', { 'content-type': 'application/grpc' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/grpc');
  assert.equal(r.headers['grpc-status'], '14');
  assert.equal(r.headers['trellis-error'], 'fault-abort');
  assert.equal(r.body, '');
  assert.equal(hits.get('/grpc'), undefined);
});

test('a fault on the Service applies to a service without routes', async () => {
  const r = await get(otherPort, '/anything');
  assert.equal(r.status, 418);
  assert.equal(r.headers['trellis-error'], 'fault-abort');
  assert.match(r.body, /FaultInjection policy default\/chaos/);
});

test('a route without a fault is not touched', async () => {
  const results = await many(apiPort, '/plain', 32);
  assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
});

// A delayed request whose client is gone leaves its delay timer behind; that timer must
// not hold the process: a proxy being stopped, or a test process, would live on for the
// rest of the delay (an hour here). The child exits on its own, or is killed at 20 s.
test('a pending fault delay does not keep the process alive', async () => {
  const layer = new URL('../../src/proxy/resilience/fault.js', import.meta.url).href;
  const out = await runModuleScript<{ injected: string }>(
    `import { fault } from ${JSON.stringify(layer)};
     let injected = '';
     const stage = fault({ injected: (_d, _r, kind) => (injected = kind) }, () => 0)(() => {});
     stage.request({ service: 'api', finished: false, route: { name: 'default/api/slow', fault: { policy: 'default/chaos', delay: { ms: 3_600_000, percent: 100 } } } });
     console.log(JSON.stringify({ injected }));`,
    [],
    process.cwd(),
    20_000,
  );
  assert.deepEqual(out, { injected: 'delay' });
});
