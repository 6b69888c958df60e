// A destination's circuit breaker through real sidecars: with maxRequests in flight,
// every further request fails at once with 503 `overflow` and is counted exactly; the
// breaker closes when the held requests finish. maxRetries bounds the retries
// outstanding: a retry over it is not made and the failed answer goes to the client.
// The sidecars' one-shot timers run on node:test's fake clock (from before they start),
// so retries wait in their backoff until the test moves the clock: "outstanding" is a
// state the test holds, not a race against real time.
import { after, before, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const servers: http.Server[] = [];
const sidecars: Sidecar[] = [];
/** Requests the app is holding, answered when the test says so. */
const held: http.ServerResponse[] = [];
let arrived = 0;
let outbound: Sidecar;

/** Protocol detection never ends on the fake clock: a connection is always detected by its first bytes. */
const NO_DETECT_TIMEOUT_MS = 24 * 3600_000;
const BACKOFF_MS = 60_000;

before(async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  const { server, port } = await listenHttp((req, res) => {
    arrived++;
    if (req.url === '/hold') held.push(res);
    else {
      res.statusCode = req.url === '/fail' ? 503 : 200;
      res.end('ok');
    }
  });
  servers.push(server);
  const inbound = await startInbound('api', 'v1', port, 'http', { detectTimeoutMs: NO_DETECT_TIMEOUT_MS });
  sidecars.push(inbound);
  const endpoints = [{ id: 'api-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [
      {
        name: 'default/api/fail',
        match: { path: { type: 'Exact', value: '/fail' } },
        backends: [{ backend: 'api', weight: 1 }],
        retry: { codes: [503], attempts: 1, backoffMs: BACKOFF_MS, nonIdempotent: false, maxBodyBytes: 65536 },
      },
      { name: 'default/api', match: {}, backends: [{ backend: 'api', weight: 1 }] },
    ],
    backends: { api: { name: 'api', endpoints } },
    balancing: {
      policy: 'test',
      balancer: 'PeakEWMA',
      panicThreshold: 50,
      circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 3, maxRetries: 2 },
    },
  };
  // The same app behind its own inbound sidecar (its own address: pooled connections are per
  // address) as another service, whose breaker allows 2 connections and 1 request waiting for one.
  const inbound2 = await startInbound('pooled', 'v1', port, 'http', { detectTimeoutMs: NO_DETECT_TIMEOUT_MS });
  sidecars.push(inbound2);
  const pool: UpstreamSnapshot = {
    service: 'pooled',
    protocol: 'http',
    routes: [],
    backends: { pooled: { name: 'pooled', endpoints: [{ id: 'pooled-0', host: '127.0.0.1', port: inbound2.addresses.inbound!.port, version: 'v1' }] } },
    balancing: {
      policy: 'test',
      balancer: 'PeakEWMA',
      panicThreshold: 50,
      circuitBreaker: { maxConnections: 2, maxPendingRequests: 1, maxRequests: 1024, maxRetries: 3 },
    },
  };
  outbound = await startOutbound('web', { api, pooled: pool }, { detectTimeoutMs: NO_DETECT_TIMEOUT_MS });
  sidecars.push(outbound);
});

after(async () => {
  for (const r of held) r.end();
  for (const s of sidecars) await s.close();
  for (const s of servers) await closeServer(s);
  mock.timers.reset();
});

function send(path: string, service = 'api'): Promise<{ status: number; token: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: outbound.addresses.upstreams[service]!.port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, token: res.headers['trellis-error'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('at maxRequests in flight, every further request overflows at once with 503 overflow, counted exactly', async () => {
  const holding = [send('/hold'), send('/hold'), send('/hold')];
  await eventually(() => assert.equal(held.length, 3));
  const refused = await Promise.all(Array.from({ length: 7 }, () => send('/other')));
  assert.deepEqual(
    refused.map((r) => `${r.status} ${r.token}`),
    Array(7).fill('503 overflow'),
  );
  assert.equal(arrived, 3, 'no overflowed request reached the app');
  const b = outbound.balancing.breakers().find((x) => x.service === 'api')!;
  assert.equal(b.open, true);
  assert.equal(b.requestOverflows, 7);
  assert.match(await metricsText(outbound), /trellis_circuit_breaker_overflows_total\{destination="api",limit="maxRequests"[^}]*\} 7\n/);
  // The held requests finish: the breaker closes and requests flow again.
  for (const r of held.splice(0)) r.end('done');
  for (const r of await Promise.all(holding)) assert.equal(r.status, 200);
  assert.equal((await send('/other')).status, 200);
  assert.equal(outbound.balancing.breakers().find((x) => x.service === 'api')!.open, false);
  assert.equal(outbound.balancing.breakers().find((x) => x.service === 'api')!.requests, 0);
});

test('at maxRetries outstanding, a further retry is not made and the failed answer reaches the client', async () => {
  // Three failing requests at once (maxRequests): two retries are held in their backoff
  // (the clock stands still), the third overflows and its client gets the app's 503.
  const before = arrived;
  const b = () => outbound.balancing.breakers().find((x) => x.service === 'api')!;
  const sent = Array.from({ length: 3 }, () => send('/fail'));
  const overflowed = await Promise.race(sent);
  assert.equal(`${overflowed.status} ${overflowed.token}`, '503 undefined');
  assert.deepEqual({ retries: b().retries, retryOverflows: b().retryOverflows }, { retries: 2, retryOverflows: 1 });
  assert.equal(arrived - before, 3, 'the held retries were not sent');
  // The clock passes the backoff: the two retries go, fail again, and their clients get the 503.
  mock.timers.tick(BACKOFF_MS);
  const results = await Promise.all(sent);
  assert.deepEqual(
    results.map((r) => `${r.status} ${r.token}`),
    Array(3).fill('503 undefined'),
  );
  assert.equal(b().retryOverflows, 1);
  assert.equal(b().requestOverflows, 7, 'no request overflowed');
  assert.equal(arrived - before, 3 + 2, 'three first attempts and two retries');
  assert.equal(b().retries, 0, 'no retry is still held');
});

test('at maxConnections, one request waits for a connection (maxPendingRequests) and the next overflows', async () => {
  const before = arrived;
  const holding = [send('/hold', 'pooled'), send('/hold', 'pooled')];
  await eventually(() => assert.equal(held.length, 2));
  const breaker = () => outbound.balancing.breakers().find((x) => x.service === 'pooled')!;
  assert.equal(breaker().connections, 2);
  const waiting = send('/other', 'pooled');
  await eventually(() => assert.equal(breaker().pending, 1));
  const over = await send('/other', 'pooled');
  assert.equal(`${over.status} ${over.token}`, '503 overflow');
  assert.equal(breaker().pendingOverflows, 1);
  assert.equal(arrived - before, 2, 'neither the waiting nor the refused request reached the app yet');
  // A held response ends: its connection goes to the waiting request.
  held.shift()!.end('done');
  assert.equal((await waiting).status, 200);
  held.shift()!.end('done');
  for (const r of await Promise.all(holding)) assert.equal(r.status, 200);
  assert.equal(breaker().pending, 0);
  assert.ok(breaker().connections <= 2);
});
