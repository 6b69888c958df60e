// How a pooled connection is secured is decided once, when it is opened: reusing it for
// the next request asks nothing again (the sidecar's answer builds TLS options from its
// peer table, work a request must not pay for).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ConnectionPool, type SecureFor } from '../../src/proxy/http1/pool.js';
import { eventually } from '../helpers/eventually.js';
import { AcceptingServer, poolEvents } from '../helpers/pool-harness.js';

const server = new AcceptingServer();

before(() => server.listen());
after(() => server.close());

const endpoint = () => server.endpoint();
/** Connections released here never carried a request (idle since 0): a timeout far past the test's run. */
const HOUR = 3_600_000;

test('a pooled connection reused for 20 requests asks how to secure it once', async () => {
  const asked: string[] = [];
  // Plaintext (undefined), as for a DISABLE peer: the count is what matters.
  const secureFor: SecureFor = (key) => void asked.push(key);
  const pool: ConnectionPool = new ConnectionPool({ secureFor, idleTimeoutMs: HOUR });
  try {
    const ev = poolEvents(() => pool);
    const start = server.accepted;
    const first = pool.acquire(endpoint(), ev);
    await eventually(() => first.ready, { what: 'the connection to open' });
    pool.release(first);
    for (let i = 1; i < 20; i++) {
      const c = pool.acquire(endpoint(), ev);
      assert.equal(c, first, 'the idle connection is reused');
      pool.release(c);
    }
    assert.equal(server.accepted - start, 1);
    assert.deepEqual(asked, [`127.0.0.1:${server.port}`]);
  } finally {
    pool.close();
  }
});

test('a second connection, opened while the first carries a request, is asked about once more', async () => {
  const asked: string[] = [];
  const pool: ConnectionPool = new ConnectionPool({ secureFor: (key) => void asked.push(key), idleTimeoutMs: HOUR });
  try {
    const ev = poolEvents(() => pool);
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
