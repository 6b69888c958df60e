// How a pooled connection is secured is decided once, when it is opened: reusing it for
// the next request asks nothing again (the sidecar's answer builds TLS options from its
// peer table, work a request must not pay for).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { ConnectionPool, type SecureFor } from '../../src/proxy/http1/pool.js';
import type { UpstreamEvents } from '../../src/proxy/http1/upstream-connection.js';
import { eventually } from '../helpers/eventually.js';

const open = new Set<net.Socket>();
let accepted = 0;
const server = net.createServer((s) => {
  accepted++;
  open.add(s);
  s.on('close', () => open.delete(s));
  s.on('error', () => {});
});
let port = 0;

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as net.AddressInfo).port;
});
after(async () => {
  for (const s of open) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const endpoint = () => ({ id: 'e1', host: '127.0.0.1', port, version: 'v1' });
/** Connections released here never carried a request (idle since 0): a timeout far past the test's run. */
const HOUR = 3_600_000;

function events(pool: () => ConnectionPool): UpstreamEvents {
  return {
    resetCode: 'TRELLIS_E_UPSTREAM_RESET',
    release: (c) => pool().release(c),
    gone: (c) => pool().gone(c),
    unsent: () => {},
  };
}

test('a pooled connection reused for 20 requests asks how to secure it once', async () => {
  const asked: string[] = [];
  // Plaintext (undefined), as for a DISABLE peer: the count is what matters.
  const secureFor: SecureFor = (key) => void asked.push(key);
  const pool: ConnectionPool = new ConnectionPool({ secureFor, idleTimeoutMs: HOUR });
  try {
    const ev = events(() => pool);
    const start = accepted;
    const first = pool.acquire(endpoint(), ev);
    await eventually(() => first.ready, { what: 'the connection to open' });
    pool.release(first);
    for (let i = 1; i < 20; i++) {
      const c = pool.acquire(endpoint(), ev);
      assert.equal(c, first, 'the idle connection is reused');
      pool.release(c);
    }
    assert.equal(accepted - start, 1);
    assert.deepEqual(asked, [`127.0.0.1:${port}`]);
  } finally {
    pool.close();
  }
});

test('a second connection, opened while the first carries a request, is asked about once more', async () => {
  const asked: string[] = [];
  const pool: ConnectionPool = new ConnectionPool({ secureFor: (key) => void asked.push(key), idleTimeoutMs: HOUR });
  try {
    const ev = events(() => pool);
    const a = pool.acquire(endpoint(), ev);
    const b = pool.acquire(endpoint(), ev);
    assert.notEqual(a, b);
    await eventually(() => a.ready && b.ready, { what: 'both connections to open' });
    pool.release(a);
    pool.release(b);
    for (let i = 0; i < 10; i++) pool.release(pool.acquire(endpoint(), ev));
    assert.equal(asked.length, 2);
  } finally {
    pool.close();
  }
});
