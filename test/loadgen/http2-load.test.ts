// HTTP/2 (h2c, prior knowledge): the same schedule and measurement over one session
// with many streams.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { runLoad } from '../../src/loadgen/run.js';
import { Servers } from './helpers.js';

const servers = new Servers();
const sessions = new Set<http2.ServerHttp2Session>();
after(async () => {
  for (const s of sessions) s.destroy();
  await servers.close();
});

async function h2c(handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void): Promise<{ url: string; sessions: () => number }> {
  let count = 0;
  const server = http2.createServer(handler);
  server.on('session', (s) => {
    count++;
    sessions.add(s);
  });
  const { url } = await servers.listen(server);
  return { url, sessions: () => count };
}

describe('HTTP/2 load', () => {
  it('sends the scheduled requests as streams of one h2c session', async () => {
    const versions = new Set<string>();
    const srv = await h2c((req, res) => {
      versions.add(req.httpVersion);
      res.end('ok');
    });
    const r = await runLoad({ url: `${srv.url}h2`, http2: true, rate: 200, durationMs: 1000, warmupMs: 0, connections: 50, timeoutMs: 2000 });
    assert.equal(r.protocol, 'h2');
    assert.equal(r.scheduled, 200);
    assert.equal(r.completed, 200);
    assert.deepEqual(r.statuses, { 200: 200 });
    assert.equal(r.errors.total, 0);
    assert.deepEqual([...versions], ['2.0']);
    assert.equal(srv.sessions(), 1);
  });

  it('sends bodies and headers, and counts non-2xx streams and streams that time out', async () => {
    let n = 0;
    const received: number[] = [];
    const srv = await h2c((req, res) => {
      let length = 0;
      req.on('data', (c: Buffer) => {
        length += c.length;
      });
      req.on('end', () => {
        received.push(length);
        n++;
        if (req.headers['x-case'] !== 'yes') res.statusCode = 400;
        else if (n % 10 === 0)
          return; // never answered
        else if (n % 10 === 5) res.statusCode = 503;
        res.end('ok');
      });
    });
    const r = await runLoad({
      url: srv.url,
      http2: true,
      method: 'POST',
      headers: [['X-Case', 'yes']],
      body: Buffer.alloc(2048, 'p'),
      rate: 100,
      durationMs: 500,
      warmupMs: 0,
      connections: 20,
      timeoutMs: 500,
    });
    assert.equal(r.completed + r.errors.timeout, 50);
    assert.equal(r.errors.timeout, 5);
    assert.deepEqual(r.errors.status, { 503: 5 });
    assert.ok(received.every((l) => l === 2048));
  });

  it('counts protocol errors against a server that speaks only HTTP/1.1, and the other way round', async () => {
    const h1 = await servers.http((_req, res) => res.end('ok'));
    const r = await runLoad({ url: h1.url, http2: true, rate: 100, durationMs: 300, warmupMs: 0, connections: 10, timeoutMs: 500 });
    assert.equal(r.errors.protocol, 30, JSON.stringify(r.errors));
    const h2 = await h2c((_req, res) => res.end('ok'));
    const back = await runLoad({ url: h2.url, rate: 100, durationMs: 300, warmupMs: 0, connections: 10, timeoutMs: 500 });
    assert.equal(back.errors.protocol, 30, JSON.stringify(back.errors));
  });

  it('counts connect errors when nothing listens', async () => {
    const probe = await servers.listen(net.createServer());
    await new Promise<void>((r) => probe.server.close(() => r()));
    const r = await runLoad({ url: probe.url, http2: true, rate: 100, durationMs: 300, warmupMs: 0, connections: 10, timeoutMs: 500 });
    assert.equal(r.errors.connect, 30);
  });
});
