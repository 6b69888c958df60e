// A pool of mutual TLS connections keeps one ready beyond those in use (preconnect): when
// a request takes the last idle connection to a peer, the next is opened and handshaken
// in the background, so the second request of a burst gets a connection whose handshake
// is done rather than waiting for one on its request path. Plaintext connections get no
// spare, and a circuit breaker's maxConnections leaves no room for one when it is full.
import assert from 'node:assert/strict';
import type net from 'node:net';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { ConnectionPool, type SecureFor } from '../../src/proxy/http1/pool.js';
import type { UpstreamConnection, UpstreamEvents } from '../../src/proxy/http1/upstream-connection.js';
import { eventually } from '../helpers/eventually.js';
import { makeLeaf, makeRoot } from '../helpers/test-pki.js';

const open = new Set<net.Socket>();
let handshakes = 0;
let server: tls.Server;
let port = 0;
let ca: string[] = [];

before(async () => {
  const root = await makeRoot('pool test root');
  const leaf = await makeLeaf({ root, trust: [root] });
  ca = leaf.material.ca;
  server = tls.createServer({ key: leaf.material.key, cert: leaf.material.cert });
  server.on('secureConnection', (s) => {
    handshakes++;
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
  });
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

/** Mutual TLS as a peer sidecar's connections are (here: the test server's CA, any name). */
const mtls: SecureFor = () => ({ options: { ca, checkServerIdentity: () => undefined }, watch: () => {} });

test('taking the last idle TLS connection opens a spare, and a burst gets it with its handshake done', async () => {
  const pool: ConnectionPool = new ConnectionPool({ secureFor: mtls, preconnect: 1, idleTimeoutMs: HOUR });
  try {
    const ev = events(() => pool);
    const start = handshakes;
    const first = pool.acquire(endpoint(), ev);
    await eventually(() => first.ready, { what: 'the first handshake' });
    pool.release(first);
    assert.deepEqual(pool.counts(), { active: 0, idle: 1 });
    // Reused: the pool is left without an idle connection, so a spare is opened beside it.
    const a = pool.acquire(endpoint(), ev);
    assert.equal(a, first);
    assert.deepEqual(pool.counts(), { active: 1, idle: 1 });
    await eventually(() => handshakes - start === 2, { what: "the spare's handshake" });
    // A second request while the first is in flight: the spare, ready.
    const b = pool.acquire(endpoint(), ev);
    assert.notEqual(b, a);
    assert.equal(b.ready, true, 'the handshake was done before the request came');
    pool.release(a);
    pool.release(b);
    // Steady traffic reuses what is there: no connection beyond the one spare.
    for (let i = 0; i < 10; i++) pool.release(pool.acquire(endpoint(), ev));
    assert.deepEqual(pool.counts(), { active: 0, idle: 3 });
  } finally {
    pool.close();
  }
});

test('no spare without preconnect, for plaintext, or when the caller has no room for one', async () => {
  for (const [what, opts, spare] of [
    ['preconnect 0', { secureFor: mtls, preconnect: 0, idleTimeoutMs: HOUR }, true],
    ['plaintext', { preconnect: 1, idleTimeoutMs: HOUR }, true],
    ['no room under maxConnections', { secureFor: mtls, preconnect: 1, idleTimeoutMs: HOUR }, false],
  ] as const) {
    const pool: ConnectionPool = new ConnectionPool(opts);
    try {
      const ev = events(() => pool);
      const first: UpstreamConnection = pool.acquire(endpoint(), ev);
      await eventually(() => first.ready, { what: `${what}: the first connection` });
      pool.release(first);
      const again = pool.acquire(endpoint(), ev, spare);
      assert.equal(again, first, what);
      assert.deepEqual(pool.counts(), { active: 1, idle: 0 }, what);
    } finally {
      pool.close();
    }
  }
});
