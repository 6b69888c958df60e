// The TCP echo throughput client: counts echoed bytes, notices corrupted or cut streams,
// and always ends (bounded by its timers) with every socket closed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { megabytesPerSecond, patternByte, runEcho } from '../../bench/tcp-echo.js';

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
after(() => {
  for (const s of sockets) s.destroy();
  return Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

const quick = { connections: 3, chunkBytes: 16 * 1024, windowBytes: 64 * 1024, durationMs: 300, warmupMs: 100 };

describe('tcp echo client', () => {
  it('counts the bytes echoed in the measured window', async () => {
    const port = await listen((s) => s.pipe(s));
    const r = await runEcho({ port, ...quick });
    assert.equal(r.errors, 0);
    assert.equal(r.mismatches, 0);
    assert.ok(r.bytesEchoed > 0);
    assert.ok(r.bytesEchoed <= r.bytesSent);
    assert.ok(Math.abs(r.mbPerS - r.bytesEchoed / 1e6 / 0.3) / r.mbPerS < 0.2, `${r.mbPerS} MB/s for ${r.bytesEchoed} bytes in ~0.3 s`);
    assert.equal(r.connections, 3);
  });

  it('notices a stream that does not come back as it was sent', async () => {
    // Drops the first byte: every later byte is one off.
    const port = await listen((s) => {
      let first = true;
      s.on('data', (d: Buffer) => {
        s.write(first ? d.subarray(1) : d);
        first = false;
      });
    });
    const r = await runEcho({ port, ...quick });
    assert.ok(r.mismatches > 0);
  });

  it('counts connections that are closed or refused', async () => {
    const port = await listen((s) => s.destroy());
    const r = await runEcho({ port, ...quick, connections: 2 });
    assert.equal(r.errors, 2);
    assert.equal(r.bytesEchoed, 0);

    const closed = await listen(() => {});
    // Closed (the callback): nothing listens on that port any more.
    await new Promise((res) => servers.pop()!.close(res));
    const refused = await runEcho({ port: closed, ...quick, connections: 2, durationMs: 100, warmupMs: 0 });
    assert.equal(refused.errors, 2);
  });

  it('refuses nonsense options', async () => {
    await assert.rejects(runEcho({ port: 1, ...quick, connections: 0 }), /connections/);
    await assert.rejects(runEcho({ port: 1, ...quick, windowBytes: 1 }), /chunkBytes/);
  });

  it('computes MB/s in 10^6 bytes and the byte pattern', () => {
    assert.equal(megabytesPerSecond(50_000_000, 5000), 10);
    assert.equal(megabytesPerSecond(1, 0), 0);
    assert.equal(patternByte(250), 250);
    assert.equal(patternByte(251), 0);
  });
});
