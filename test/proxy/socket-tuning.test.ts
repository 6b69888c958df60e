// The socket tuning in src/proxy/listeners/socket-tuning.ts and the idle sweep of HTTP/1.1 client
// connections: a socket that skips Readable's read-more pass still delivers every byte,
// through pause/resume backpressure, to its end; and an idle client connection is closed
// by the sweep while one with a request in flight is not.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'node:test';
import { HttpServerConnection } from '../../src/proxy/http1/http-server-connection.js';
import { holdsLastWrite, skipReadMore } from '../../src/proxy/listeners/socket-tuning.js';
import { makeLeaf, makeRoot } from '../helpers/test-pki.js';
import { eventually } from '../helpers/eventually.js';
import type { Exchange } from '../../src/proxy/stack/exchange.js';

/** A server on loopback and a connected client; `onServer` gets the accepted socket. */
async function socketPair(onServer: (s: net.Socket) => void): Promise<{ client: net.Socket; close(): Promise<void> }> {
  const server = net.createServer(onServer);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  return {
    client,
    close: () =>
      new Promise<void>((r) => {
        client.destroy();
        server.close(() => r());
      }),
  };
}

const readingMore = (s: net.Socket): boolean | undefined => (s as unknown as { _readableState: { readingMore?: boolean } })._readableState.readingMore;

test('a tuned socket receives 8 MB whole through pause/resume backpressure, then its end', async () => {
  const payload = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  let received: Promise<{ bytes: number; digest: string; flagStayed: boolean }> | undefined;
  const pair = await socketPair((s) => {
    skipReadMore(s);
    received = new Promise((resolve) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let flagStayed = true;
      s.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        flagStayed &&= readingMore(s) !== false;
        // A slow consumer: the socket is paused often, so its buffer fills and reading stops.
        if (bytes % 3 === 0) {
          s.pause();
          setImmediate(() => s.resume());
        }
      });
      s.on('end', () => resolve({ bytes, digest: hash.digest('hex'), flagStayed }));
    });
  });
  pair.client.end(payload);
  while (received === undefined) await new Promise((r) => setImmediate(r));
  const got = await received;
  await pair.close();
  assert.equal(got.bytes, payload.length);
  assert.equal(got.digest, createHash('sha256').update(payload).digest('hex'));
  assert.ok(got.flagStayed, 'the read-more pass stays skipped while data flows');
});

test('on this Node, a stock socket runs the read-more pass that a tuned one skips', async () => {
  // Guards the premise of skipReadMore: if Node stops keeping `readingMore`, this fails
  // and the tuning (now a no-op) can be removed or redone.
  let stockFlag: boolean | undefined;
  const pair = await socketPair((s) => {
    s.once('data', () => {
      setImmediate(() => {
        stockFlag = readingMore(s);
      });
    });
  });
  pair.client.write('x');
  while (stockFlag === undefined) await new Promise((r) => setImmediate(r));
  await pair.close();
  assert.equal(stockFlag, false, 'Readable clears readingMore after its pass');
});

test('the idle sweep closes a client connection with no request in flight, and spares a busy one', async () => {
  const conns: HttpServerConnection[] = [];
  let handled: Exchange | undefined;
  const pair = await socketPair((s) =>
    conns.push(
      new HttpServerConnection(s, (ex) => {
        handled = ex;
      }),
    ),
  );
  const idlePair = await socketPair((s) => conns.push(new HttpServerConnection(s, () => {})));
  while (conns.length < 2) await new Promise((r) => setImmediate(r));
  const [busy, idle] = conns as [HttpServerConnection, HttpServerConnection];

  pair.client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  while (handled === undefined) await new Promise((r) => setImmediate(r));
  const idleClosed = new Promise((r) => idlePair.client.once('close', r));
  // Any tick counts as long ago: only whether an exchange is in flight decides.
  busy.closeIfIdle(Number.MAX_SAFE_INTEGER);
  idle.closeIfIdle(Number.MAX_SAFE_INTEGER);
  await idleClosed;
  assert.equal(busy.socket.destroyed, false, 'a connection waiting on its response is not idle');
  await pair.close();
  await idlePair.close();
});

test('holdsLastWrite: a TLS socket holds only writes queued behind one in flight; TCP holds any unwritten one', async () => {
  const root = await makeRoot();
  const leaf = await makeLeaf({ root, trust: [root] });
  const server = tls.createServer({ key: leaf.material.key, cert: leaf.material.cert });
  const accepted = new Promise<tls.TLSSocket>((r) => server.once('secureConnection', r));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ca: root.pem, checkServerIdentity: () => undefined });
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  const s = await accepted;
  try {
    const first = Buffer.alloc(1000, 0x41);
    s.write(first);
    assert.ok(s.writableLength > 0, 'a TLS write is still in flight');
    assert.equal(holdsLastWrite(s), false, 'the TLS record already holds a copy of the first write');
    first.fill(0x42); // ...so changing the memory now changes nothing sent
    s.write(Buffer.alloc(10, 0x43));
    assert.equal(holdsLastWrite(s), true, 'a write queued behind one in flight is still referenced');
    await eventually(() => Buffer.concat(chunks).length === 1010);
    const got = Buffer.concat(chunks);
    assert.equal(got.subarray(0, 1000).toString(), 'A'.repeat(1000));
    assert.equal(got.subarray(1000).toString(), 'C'.repeat(10));
  } finally {
    client.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
  // Plain TCP: libuv writes from the caller's memory, so any byte not yet written holds it.
  const fake = { writableLength: 5 } as unknown as net.Socket;
  assert.equal(holdsLastWrite(fake), true);
  assert.equal(holdsLastWrite({ writableLength: 0 } as unknown as net.Socket), false);
});
