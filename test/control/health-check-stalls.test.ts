// Health checks immune to the checker's own stalls (issue 17): when the control plane's
// event loop is blocked, a probe's answer that arrived meanwhile counts, the timeout runs
// from when the connection opened and the request was written, and a timeout the checker
// only noticed late (it was not watching) is inconclusive, never a failure. The app runs
// in a worker thread: it keeps answering while the main thread is blocked.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { HealthChecker, probeHttp, probeTcp } from '../../src/control/sources/health-checker.js';
import { MeshModel } from '../../src/control/model.js';
import { config, service } from './helpers.js';

const workers: Worker[] = [];
after(() => Promise.all(workers.map((w) => w.terminate())));

/** An app in its own thread: `GET /healthz` 200 after `delayMs`; `/silent` never answers. */
async function threadApp(delayMs = 0): Promise<number> {
  const w = new Worker(
    `const http = require('node:http');
     const { parentPort } = require('node:worker_threads');
     const server = http.createServer((req, res) => {
       if (req.url === '/silent') return;
       setTimeout(() => res.end('ok'), ${delayMs});
     });
     server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));`,
    { eval: true },
  );
  workers.push(w);
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

/** Blocks this thread, as a long compile or a garbage collection would. */
function block(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

test('an HTTP answer that arrived while the checker was blocked counts as healthy', async () => {
  const port = await threadApp();
  const result = probeHttp({ host: '127.0.0.1', port }, '/healthz', 200, 100);
  block(400);
  assert.deepEqual(await result, { ok: true });
});

test('a TCP connect that completed while the checker was blocked counts as healthy', async () => {
  const port = await threadApp();
  const result = probeTcp({ host: '127.0.0.1', port }, 100);
  block(400);
  assert.deepEqual(await result, { ok: true });
});

test("the HTTP timeout runs from the request's write, not from the probe's start", async () => {
  // Answers 150 ms after the request: within the 250 ms timeout from the write, though
  // the probe started 300 ms before the connection was even seen.
  const port = await threadApp(150);
  const result = probeHttp({ host: '127.0.0.1', port }, '/healthz', 200, 250);
  block(300);
  assert.deepEqual(await result, { ok: true });
});

test('an app that never answers still fails, after the timeout', async () => {
  const port = await threadApp();
  const t0 = performance.now();
  const r = await probeHttp({ host: '127.0.0.1', port }, '/silent', 200, 150);
  assert.equal(r.ok, false);
  assert.equal(r.inconclusive, undefined);
  assert.match(r.error ?? '', /no response within 150 ms/);
  assert.ok(performance.now() - t0 >= 140);
});

test('a timeout noticed only after a stall is inconclusive, and leaves the health as it was', async () => {
  const port = await threadApp();
  const r = probeHttp({ host: '127.0.0.1', port }, '/silent', 200, 100);
  // Let the request go out, then block past the timeout: the checker was not watching.
  await new Promise((res) => setTimeout(res, 30));
  block(600);
  const result = await r;
  assert.equal(result.ok, false);
  assert.equal(result.inconclusive, true);

  const model = new MeshModel();
  model.setConfig(
    config([service('app', { health: { type: 'http', path: '/healthz', intervalMs: 1000, timeoutMs: 100, healthyThreshold: 1, unhealthyThreshold: 1 } })]),
    [],
  );
  model.addInstance({
    id: 'app-0',
    service: 'app',
    version: 'default',
    app: { host: '127.0.0.1', port },
    inbound: { host: '127.0.0.1', port: 1 },
    admin: { host: '127.0.0.1', port: 2 },
    pid: 1,
  });
  const checker = new HealthChecker({ model, schedule: false, probe: async () => ({ ok: true }) });
  checker.start();
  await checker.checkNow('app-0');
  assert.equal(model.health('app-0')?.status, 'healthy');
  const stalled = new HealthChecker({ model, schedule: false, probe: async () => result });
  stalled.start();
  await stalled.checkNow('app-0');
  assert.equal(model.health('app-0')?.status, 'healthy', 'one inconclusive check changes nothing');
  checker.stop();
  stalled.stop();
});
