// Closing a connection pool closes every connection it made: idle ones, ones still being
// established, and ones that finish a request or are asked for after the pool closed; and
// its idle timeout closes connections that went idle together a few at a time.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CLOSES_PER_SWEEP, ConnectionPool } from '../../src/proxy/http1/pool.js';
import type { UpstreamConnection } from '../../src/proxy/http1/upstream-connection.js';
import { eventually } from '../helpers/eventually.js';
import { AcceptingServer, poolEvents } from '../helpers/pool-harness.js';

const server = new AcceptingServer();

before(() => server.listen());
after(() => server.close());

const endpoint = () => server.endpoint();

test('closing a pool closes every idle connection, not every other one', async () => {
  const pool: ConnectionPool = new ConnectionPool();
  const ev = poolEvents(() => pool);
  const start = server.accepted;
  const conns: UpstreamConnection[] = [];
  for (let i = 0; i < 5; i++) conns.push(pool.acquire(endpoint(), ev));
  await eventually(() => server.accepted - start === 5 && conns.every((c) => c.ready));
  for (const c of conns) pool.release(c);
  assert.deepEqual(pool.counts(), { active: 0, idle: 5 });
  pool.close();
  await eventually(() => server.open.size === 0, { what: 'every connection to close' });
  assert.ok(conns.every((c) => c.socket.destroyed));
});

test('closing a pool while connections are being established leaks none of them', async () => {
  const pool: ConnectionPool = new ConnectionPool();
  const ev = poolEvents(() => pool);
  const conns: UpstreamConnection[] = [];
  for (let i = 0; i < 5; i++) conns.push(pool.acquire(endpoint(), ev));
  // Closed before any connect completed; a connection that finishes its request after
  // the close is released to a closed pool, and a connection asked for afterwards is
  // never opened.
  pool.close();
  const late = pool.acquire(endpoint(), ev);
  pool.release(late);
  await eventually(() => conns.every((c) => c.socket.destroyed) && late.socket.destroyed);
  await eventually(() => server.open.size === 0, { what: 'every connection to close' });
  assert.deepEqual(pool.counts(), { active: 0, idle: 0 });
});

test('connections that went idle together are closed a few at a time, not all in one sweep', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  // Idle timeout 1 ms: every released connection (never used: idle since 0) is past it at the first sweep.
  const pool: ConnectionPool = new ConnectionPool({ idleTimeoutMs: 1 });
  try {
    const ev = poolEvents(() => pool);
    const conns: UpstreamConnection[] = [];
    for (let i = 0; i < 10; i++) conns.push(pool.acquire(endpoint(), ev));
    await eventually(() => conns.every((c) => c.ready), { what: 'every connection to open' });
    for (const c of conns) pool.release(c);
    assert.deepEqual(pool.counts(), { active: 0, idle: 10 });
    t.mock.timers.tick(250);
    assert.deepEqual(pool.counts(), { active: 0, idle: 10 - CLOSES_PER_SWEEP });
    for (let i = 0; i < 10 && pool.counts().idle > 0; i++) t.mock.timers.tick(250);
    assert.deepEqual(pool.counts(), { active: 0, idle: 0 });
    assert.ok(conns.every((c) => c.socket.destroyed));
  } finally {
    pool.close();
  }
});

test('a connection past the idle timeout, not yet closed by the sweep, is not reused', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const pool: ConnectionPool = new ConnectionPool({ idleTimeoutMs: 1 });
  try {
    const ev = poolEvents(() => pool);
    const old = pool.acquire(endpoint(), ev);
    await eventually(() => old.ready, { what: 'the connection to open' });
    // Released, never used: idle since 0, past the 1 ms timeout; no sweep has run.
    pool.release(old);
    const next = pool.acquire(endpoint(), ev);
    assert.notEqual(next, old);
    pool.release(next);
  } finally {
    pool.close();
  }
});

test('the pool counts connections carrying a request and idle ones as they move between the two, and closed ones in neither', async () => {
  const pool: ConnectionPool = new ConnectionPool();
  try {
    const ev = poolEvents(() => pool);
    const conns = [pool.acquire(endpoint(), ev), pool.acquire(endpoint(), ev), pool.acquire(endpoint(), ev)];
    await eventually(() => conns.every((c) => c.ready), { what: 'every connection to open' });
    assert.deepEqual(pool.counts(), { active: 3, idle: 0 });
    pool.release(conns[0]!);
    pool.release(conns[1]!);
    assert.deepEqual(pool.counts(), { active: 1, idle: 2 });
    const again = pool.acquire(endpoint(), ev);
    assert.ok(again === conns[1], 'the most recently released connection is reused');
    assert.deepEqual(pool.counts(), { active: 2, idle: 1 });
    conns[2]!.close();
    assert.deepEqual(pool.counts(), { active: 1, idle: 1 });
    pool.release(again);
    assert.deepEqual(pool.counts(), { active: 0, idle: 2 });
  } finally {
    pool.close();
  }
  await eventually(() => server.open.size === 0, { what: 'every connection to close' });
  assert.deepEqual(pool.counts(), { active: 0, idle: 0 });
});
