// Retries through real sidecars: a 503 from one endpoint is retried on another and the
// client never sees it; a reset before any response byte is retried; a POST is not
// replayed unless a RetryPolicy allows it; a body over the limit is not kept, so not
// retried; and a destination that always fails gets no more retries than its budget.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RetryBudgetConfig, RetryConfig, RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const servers: (http.Server | net.Server)[] = [];
const sidecars: Sidecar[] = [];
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

/** Requests an app saw, by path, and the bodies it got. */
const seen = new Map<string, number>();
const bodies = new Map<string, string[]>();

async function app(name: string, status: (path: string) => number): Promise<number> {
  const { server, port } = await listenHttp((req, res) => {
    const path = req.url!.split('?')[0]!;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.set(`${name} ${req.method} ${path}`, (seen.get(`${name} ${req.method} ${path}`) ?? 0) + 1);
      const list = bodies.get(path) ?? [];
      list.push(Buffer.concat(chunks).toString());
      bodies.set(path, list);
      res.statusCode = status(path);
      res.end(`${name} ${res.statusCode}`);
    });
  });
  servers.push(server);
  return port;
}

const count = (key: string): number => seen.get(key) ?? 0;
const policy = (p: Partial<RetryConfig>): RetryConfig => ({ codes: [503], attempts: 2, backoffMs: 5, nonIdempotent: false, maxBodyBytes: 65536, ...p });
const rule = (name: string, prefix: string, backend: string, retry: RetryConfig): RouteEntry => ({
  name: `default/${name}`, match: { path: { type: 'PathPrefix', value: prefix } }, backends: [{ backend, weight: 1 }], retry,
});

let port: number;
let budgetPort: number;
let resetPort: number;
let outbound: Sidecar;
let resets = 0;
let logDir: string;

before(async () => {
  // "good" answers 200 everywhere, "bad" answers 503 everywhere.
  const good = await app('good', () => 200);
  const bad = await app('bad', () => 503);
  const inGood = await startInbound('api', 'v1', good);
  const inBad = await startInbound('api', 'v2', bad);
  sidecars.push(inGood, inBad);
  const ep = (s: Sidecar, id: string, version: string) => ({ id, host: '127.0.0.1', port: s.addresses.inbound!.port, version });
  const both = [ep(inGood, 'api-good', 'v1'), ep(inBad, 'api-bad', 'v2')];
  // A port nobody listens on: connecting is refused before anything is sent.
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const refusedOrGood = [{ id: 'api-dead', host: '127.0.0.1', port: deadPort, version: 'v1' }, both[0]!];
  const api: UpstreamSnapshot = {
    service: 'api', protocol: 'http',
    routes: [
      { name: 'default/api/refused', match: { path: { type: 'PathPrefix', value: '/refused' } }, backends: [{ backend: 'api-refused', weight: 1 }] },
      rule('api/spread', '/spread', 'api', policy({})),
      rule('api/post', '/post', 'api-bad', policy({})),
      rule('api/post-allowed', '/unsafe', 'api-bad', policy({ nonIdempotent: true })),
      rule('api/body', '/body', 'api-bad', policy({ maxBodyBytes: 1024 })),
    ],
    backends: {
      api: { name: 'api', endpoints: both }, 'api-bad': { name: 'api-bad', endpoints: [both[1]!] },
      'api-refused': { name: 'api-refused', endpoints: refusedOrGood },
    },
  };
  // A destination that always fails, with a budget of 20% and no minimum rate.
  const budget: RetryBudgetConfig = { percent: 20, windowMs: 10_000, minRetries: 0, minIntervalMs: 1000 };
  const down: UpstreamSnapshot = {
    service: 'down', protocol: 'http', retryBudget: budget,
    routes: [rule('down/all', '/', 'down', policy({ attempts: 3 }))],
    backends: { down: { name: 'down', endpoints: [ep(inBad, 'down-bad', 'v1')] } },
  };
  // An endpoint that resets the first connection after reading the request, then answers.
  const flaky = net.createServer((sock) => {
    sock.once('data', () => {
      if (resets++ === 0) return sock.destroy();
      sock.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
  servers.push(flaky);
  const reset: UpstreamSnapshot = {
    service: 'reset', protocol: 'http',
    routes: [rule('reset/all', '/', 'reset', policy({ codes: [], attempts: 1 }))],
    backends: { reset: { name: 'reset', endpoints: [{ id: 'flaky', host: '127.0.0.1', port: (flaky.address() as net.AddressInfo).port, version: 'v1' }] } },
  };
  logDir = await mkdtemp(join(tmpdir(), 'trellis-retry-'));
  outbound = await startOutbound('web', { api, down, reset }, { accessLog: join(logDir, 'access.log') });
  sidecars.push(outbound);
  port = outbound.addresses.upstreams.api!.port;
  budgetPort = outbound.addresses.upstreams.down!.port;
  resetPort = outbound.addresses.upstreams.reset!.port;
});

after(async () => {
  agent.destroy();
  for (const s of sidecars) await s.close();
  for (const s of servers) await closeServer(s);
  await rm(logDir, { recursive: true, force: true });
});

function send(p: number, method: string, path: string, body?: string): Promise<{ status: number; body: string; token: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: p, method, path, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body: text, token: res.headers['trellis-error'] as string | undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a 503 from one endpoint is retried on the other and never reaches the client', async () => {
  for (let i = 0; i < 20; i++) {
    const r = await send(port, 'GET', '/spread');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'good 200');
  }
  assert.equal(count('good GET /spread'), 20);
  const failed = count('bad GET /spread');
  assert.ok(failed > 0, 'round robin sent some first attempts to the failing endpoint');
  const text = await metricsText(outbound);
  assert.match(text, new RegExp(`trellis_http_retries_total\\{destination="api",route="default/api/spread",reason="503",[^}]*\\} ${failed}\\n`));
  // The client saw only 200s: the outbound's request series has no 503 for this route.
  assert.doesNotMatch(text, /trellis_http_requests_total\{direction="outbound"[^}]*route="default\/api\/spread",status="503"/);
});

test('a POST whose connection was refused (nothing sent) goes to another endpoint, with no retry policy', async () => {
  for (let i = 0; i < 4; i++) {
    const r = await send(port, 'POST', '/refused', `n=${i}`);
    assert.equal(r.status, 200);
  }
  assert.equal(count('good POST /refused'), 4, 'each POST reached the app exactly once');
  assert.deepEqual(bodies.get('/refused'), ['n=0', 'n=1', 'n=2', 'n=3']);
});

test('a POST is not retried by default: the backend sees it exactly once', async () => {
  const r = await send(port, 'POST', '/post', 'order=1');
  assert.equal(r.status, 503);
  assert.equal(count('bad POST /post'), 1);
});

test('a POST is retried when the route\'s RetryPolicy allows it, with the same body each time', async () => {
  const r = await send(port, 'POST', '/unsafe', 'order=2');
  assert.equal(r.status, 503, 'the last attempt\'s response reaches the client');
  assert.equal(r.body, 'bad 503');
  assert.equal(count('bad POST /unsafe'), 3);
  assert.deepEqual(bodies.get('/unsafe'), ['order=2', 'order=2', 'order=2']);
});

test('a body over the limit is not kept, so not retried; a small one is', async () => {
  const big = 'x'.repeat(4096);
  const r1 = await send(port, 'PUT', '/body', big);
  assert.equal(r1.status, 503);
  assert.equal(count('bad PUT /body'), 1);
  const r2 = await send(port, 'PUT', '/body', 'small');
  assert.equal(r2.status, 503);
  assert.equal(count('bad PUT /body'), 1 + 3);
  assert.deepEqual(bodies.get('/body')!.slice(1), ['small', 'small', 'small']);
});

test('a reset before any response byte is retried', async () => {
  const r = await send(resetPort, 'GET', '/x');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok');
  assert.equal(resets, 2);
  assert.match(await metricsText(outbound), /trellis_http_retries_total\{destination="reset",route="default\/reset\/all",reason="reset",[^}]*\} 1\n/);
  // The access log line of the exchange says how many attempts it took (lines are
  // written once per event-loop turn: wait for it).
  const line = await eventually(async () => {
    const text = await readFile(join(logDir, 'access.log'), 'utf8').catch(() => '');
    const found = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { destination: string; attempts?: number; status?: number }).find((l) => l.destination === 'reset');
    assert.ok(found, 'the exchange\'s access log line');
    return found;
  });
  assert.equal(line.attempts, 2);
  assert.equal(line.status, 200);
});

test('retries to a destination that always fails stay within its budget', async () => {
  const n = 100;
  for (let i = 0; i < n; i++) {
    const r = await send(budgetPort, 'GET', '/always');
    assert.equal(r.status, 503);
  }
  const attempts = count('bad GET /always');
  // Without a budget: 4 attempts each (400). With 20% and no minimum rate: at most 120.
  assert.ok(attempts >= n && attempts <= n * 1.2, `attempts: ${attempts}`);
  assert.ok(attempts > n, 'some retries were sent');
  const text = await metricsText(outbound);
  const exhausted = /trellis_http_retry_budget_exhausted_total\{destination="down",route="default\/down\/all",[^}]*\} (\d+)/.exec(text);
  assert.ok(exhausted !== null && Number(exhausted[1]) > 0, 'the spent budget is counted');
});
