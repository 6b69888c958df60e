// The new-connection (handshake) rate client: counts whole connect-echo-close cycles in
// the measured window, counts refused or corrupted ones as errors, and always ends.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { runNewConnections } from '../../bench/new-connections.js';

const servers: net.Server[] = [];
after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

async function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => s.destroy());
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

describe('new-connection rate client', () => {
  it('counts every connection that came back whole in the measured window', async () => {
    let accepted = 0;
    const port = await listen((s) => {
      accepted++;
      s.pipe(s);
    });
    const r = await runNewConnections({ port, concurrency: 4, durationMs: 300, warmupMs: 100 });
    assert.equal(r.errors, 0);
    assert.ok(r.completed > 0, 'some connections completed');
    assert.ok(r.completed <= accepted, `${r.completed} completed, ${accepted} accepted (warm-up ones included)`);
    assert.ok(Math.abs(r.perSecond - r.completed / 0.3) < 1e-6);
    assert.equal(r.latencyUs.count, r.completed);
    assert.ok(r.latencyUs.p50 > 0 && r.latencyUs.p99 >= r.latencyUs.p50);
  });

  it('counts connections closed before the echo, and echoes of other bytes, as errors', async () => {
    const closing = await listen((s) => s.end());
    const a = await runNewConnections({ port: closing, concurrency: 2, durationMs: 200, warmupMs: 0 });
    assert.equal(a.completed, 0);
    assert.ok(a.errors > 0);
    const wrong = await listen((s) => s.once('data', (d: Buffer) => s.end(Buffer.alloc(d.length, 0x78))));
    const b = await runNewConnections({ port: wrong, concurrency: 2, durationMs: 200, warmupMs: 0 });
    assert.equal(b.completed, 0);
    assert.ok(b.errors > 0);
  });

  it('ends on time when nothing answers', async () => {
    const silent = await listen(() => {});
    const t0 = performance.now();
    const r = await runNewConnections({ port: silent, concurrency: 2, durationMs: 100, warmupMs: 0, timeoutMs: 200 });
    assert.equal(r.completed, 0);
    assert.ok(performance.now() - t0 < 2000);
  });
});
