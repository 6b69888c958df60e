// The open-model client: it keeps its rate, reads Content-Length, chunked and
// Connection: close answers, and counts failures instead of hanging.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, describe, it } from 'node:test';
import { runFixedRate } from '../../bench/fixed-rate.js';

const servers: net.Server[] = [];
// A server that never answered some requests still holds their connections: end them too.
after(() =>
  Promise.all(
    servers.map(
      (s) =>
        new Promise((r) => {
          s.close(r);
          if (s instanceof http.Server) s.closeAllConnections();
        }),
    ),
  ),
);

async function listen(server: net.Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
}

const quick = { rate: 200, durationMs: 500, warmupMs: 100, connections: 4, timeoutMs: 1000 };

describe('fixed-rate client', () => {
  it('sends the scheduled requests and records their latency (Content-Length bodies)', async () => {
    let seen = 0;
    const url = await listen(
      http.createServer((_req, res) => {
        seen++;
        res.end('x'.repeat(1024));
      }),
    );
    const r = await runFixedRate({ url, ...quick });
    assert.equal(r.scheduled, 100);
    assert.equal(r.completed, 100);
    assert.equal(r.errors + r.timeouts + r.non2xx, 0);
    assert.equal(seen, 120); // warm-up included
    assert.ok(r.latencyUs.p50 > 0 && r.latencyUs.p50 < 100_000);
  });

  it('tells a stalled target (requests queued for a connection) from a late client', async () => {
    let stalled = false;
    const url = await listen(
      http.createServer((_req, res) => {
        // The first request after 200 ms (warm-up 100 ms + 100 ms) takes every connection hostage for 300 ms.
        if (!stalled) {
          stalled = true;
          setTimeout(() => res.end('late'), 300); // the stall under test
          return;
        }
        res.end('ok');
      }),
    );
    const r = await runFixedRate({ url, ...quick, connections: 1 });
    assert.equal(r.completed, 100);
    assert.ok(r.queueWaitUs.max > 200_000, `queue wait max ${r.queueWaitUs.max}`);
    assert.ok(r.peakQueued >= 40, `peak queued ${r.peakQueued}`);
    assert.ok(r.schedulerLagUs.p99 < r.queueWaitUs.max);
  });

  it('reads chunked bodies and answers that close the connection', async () => {
    let n = 0;
    const url = await listen(
      http.createServer((_req, res) => {
        n++;
        if (n % 3 === 0) res.setHeader('Connection', 'close');
        res.write('abc');
        res.end('def');
      }),
    );
    const r = await runFixedRate({ url, ...quick });
    assert.equal(r.completed, 100);
    assert.equal(r.errors + r.timeouts, 0);
  });

  it('counts 5xx answers and requests that never get an answer', async () => {
    let n = 0;
    const url = await listen(
      http.createServer((_req, res) => {
        n++;
        if (n % 10 === 0) return; // never answers
        res.statusCode = n % 10 === 5 ? 503 : 200;
        res.end('ok');
      }),
    );
    const r = await runFixedRate({ url, ...quick, connections: 20 });
    assert.ok(r.non2xx > 0, 'some 503s');
    assert.ok(r.timeouts > 0, 'some timeouts');
    assert.equal(r.completed + r.errors + r.timeouts, r.scheduled);
    assert.ok(r.failures.length > 0);
  });

  it('refuses targets that are not on loopback', async () => {
    await assert.rejects(runFixedRate({ url: 'http://10.0.0.1/', ...quick }), /loopback/);
  });
});

describe('fixed-rate client with a request body', () => {
  it('sends the method and the body with its Content-Length on every request', async () => {
    const seen: { method: string; bytes: number; length: string | undefined }[] = [];
    const url = await listen(
      http.createServer((req, res) => {
        let bytes = 0;
        req.on('data', (d: Buffer) => (bytes += d.length));
        req.on('end', () => {
          seen.push({ method: req.method ?? '', bytes, length: req.headers['content-length'] });
          res.end('ok');
        });
      }),
    );
    const r = await runFixedRate({ url, ...quick, method: 'POST', body: Buffer.alloc(1024, 'a') });
    assert.equal(r.completed, 100);
    assert.equal(r.errors + r.timeouts + r.non2xx, 0);
    assert.equal(r.method, 'POST');
    assert.equal(r.requestBodyBytes, 1024);
    assert.equal(seen.length, 120);
    assert.ok(seen.every((s) => s.method === 'POST' && s.bytes === 1024 && s.length === '1024'));
  });
});
