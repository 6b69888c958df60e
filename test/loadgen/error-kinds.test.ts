// Every request is accounted for: answered (by status), or failed by kind: connect,
// reset, timeout, protocol. Non-2xx answers are errors, counted by status.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { runLoad } from '../../src/loadgen/run.js';
import { eventually } from '../helpers/eventually.js';
import { drive, ManualClock, Servers, started } from './helpers.js';

const servers = new Servers();
after(() => servers.close());

const quick = { rate: 100, durationMs: 500, warmupMs: 0, connections: 5, timeoutMs: 500 };

describe('errors by kind', () => {
  it('counts non-2xx answers by status, and records their latency', async () => {
    let n = 0;
    const { url } = await servers.http((_req, res) => {
      n++;
      res.statusCode = n % 5 === 0 ? 503 : n % 5 === 1 ? 404 : 200;
      res.end('x');
    });
    const r = await runLoad({ url, ...quick });
    assert.equal(r.completed, 50);
    assert.deepEqual(r.statuses, { 200: 30, 404: 10, 503: 10 });
    assert.deepEqual(r.errors.status, { 404: 10, 503: 10 });
    assert.equal(r.errors.total, 20);
    assert.equal(r.latencyUs.count, 50);
  });

  it('counts connect errors, fast, when nothing listens', async () => {
    const probe = await servers.listen(net.createServer());
    await new Promise<void>((r) => probe.server.close(() => r()));
    // On a clock moved by hand to the schedule's end and no further: a request that
    // waited for its timeout (500 ms) would keep the run from ending.
    const clock = new ManualClock();
    let settled = 0;
    let ended = false;
    const run = runLoad({ url: probe.url, ...quick, clock, onRequest: () => settled++ });
    run
      .finally(() => {
        ended = true;
      })
      .catch(() => {});
    const plan = await started(clock);
    await drive(clock, plan.startMs + quick.durationMs, () => settled === clock.due);
    await eventually(() => assert.ok(ended, "no request waited for its timeout: the run ended with the clock at the schedule's end"));
    const r = await run;
    assert.equal(r.errors.connect, 50);
    assert.equal(r.completed, 0);
  });

  it('counts connections closed before the answer as resets', async () => {
    let n = 0;
    const { url } = await servers.http((req, res) => {
      if (++n % 2 === 0) req.socket.destroy();
      else res.end('ok');
    });
    const r = await runLoad({ url, ...quick });
    assert.equal(r.errors.reset + r.completed, 50);
    assert.ok(r.errors.reset >= 20, `resets ${r.errors.reset}`);
  });

  it('counts malformed answers as protocol errors', async () => {
    const { url } = await servers.listen(
      net.createServer((socket) => {
        socket.on('data', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
        socket.on('error', () => {});
      }),
    );
    const r = await runLoad({ url, ...quick });
    assert.equal(r.errors.protocol, 50, JSON.stringify(r.errors));
  });

  it('counts requests with no answer in time as timeouts', async () => {
    let n = 0;
    const { url } = await servers.http((_req, res) => {
      if (++n % 10 !== 0) res.end('ok'); // every tenth is never answered
    });
    const r = await runLoad({ url, ...quick, connections: 10 });
    assert.equal(r.errors.timeout, 5);
    assert.equal(r.completed, 45);
  });

  it('reads chunked, Content-Length and close-delimited answers, and HEAD answers without a body', async () => {
    let n = 0;
    const { url } = await servers.listen(
      net.createServer((socket) => {
        socket.on('error', () => {});
        socket.on('data', (d) => {
          const head = d.toString('latin1').startsWith('HEAD');
          const k = n++ % 3;
          if (head) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
          else if (k === 0) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
          else if (k === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          else socket.end('HTTP/1.1 200 OK\r\n\r\nuntil close');
        });
      }),
    );
    const get = await runLoad({ url, ...quick });
    assert.equal(get.completed, 50, JSON.stringify(get.errors));
    const head = await runLoad({ url, ...quick, method: 'HEAD' });
    assert.equal(head.completed, 50, JSON.stringify(head.errors));
  });

  it('sends the method, headers and body asked for', async () => {
    const seen: { method?: string; auth?: string; length: number }[] = [];
    const { url } = await servers.http((req, res) => {
      let length = 0;
      req.on('data', (c: Buffer) => {
        length += c.length;
      });
      req.on('end', () => {
        seen.push({ method: req.method, auth: req.headers['x-token'] as string | undefined, length });
        res.end('ok');
      });
    });
    const r = await runLoad({ url, ...quick, durationMs: 100, method: 'PUT', headers: [['X-Token', 'abc']], body: Buffer.alloc(3000, 'b') });
    assert.equal(r.completed, 10);
    assert.deepEqual(seen[0], { method: 'PUT', auth: 'abc', length: 3000 });
  });

  it('refuses targets off loopback, and headers that would break framing', async () => {
    for (const url of ['http://10.0.0.1/', 'http://example.com/', 'https://127.0.0.1/']) {
      await assert.rejects(runLoad({ url, ...quick }), (e: Error & { code?: string }) => e.code === 'TRELLIS_E_USAGE', url);
    }
    await assert.rejects(runLoad({ url: 'http://127.0.0.1:1/', ...quick, headers: [['Content-Length', '5']] }), /set by the load generator/);
    await assert.rejects(runLoad({ url: 'http://127.0.0.1:1/', ...quick, headers: [['X-A', 'b\r\nInjected: 1']] }), /line break/);
  });
});
