// The proxy's one timeout sweep (src/proxy/resilience/timeout.ts), on an explicit clock:
// `Deadlines.sweep(now)` is driven with chosen times, so every limit is checked exactly,
// with no real time spent. What an expiry does is seen from the exchange's way back: the
// attempt in flight is cancelled and a `timeout` outcome reported (an attempt's limit, or
// the request's deadline), once.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { type AttemptLink, Exchange } from '../../src/proxy/stack/exchange.js';
import { isFailure, parseRequestHead } from '../../src/http1/http1-parser.js';
import { Deadlines } from '../../src/proxy/resilience/timeout.js';
import type { Outcome } from '../../src/proxy/stack/outcome.js';

/** Far from performance.now(): the sweep's own timer, reading the real clock, never expires these. */
const T0 = performance.now() + 1e9;

interface Watched {
  ex: Exchange;
  outcomes: Outcome[];
  cancelled: () => number;
  link: (sentAt: number, headTimeoutMs: number) => void;
}

function watched(): Watched {
  const head = Buffer.from('GET /slow HTTP/1.1\r\nHost: api\r\n\r\n', 'latin1');
  const req = parseRequestHead(head, head.length);
  if (isFailure(req)) assert.fail(req.reason);
  const ex = new Exchange({ socket: new PassThrough(), exchangeDone: () => {}, resumeBody: () => {}, pauseBody: () => {}, detach: () => undefined }, req, head);
  ex.requestBodyDone = true;
  ex.endpoint = { id: 'api-0', host: '127.0.0.1', port: 9, version: 'v1' };
  const outcomes: Outcome[] = [];
  ex.back = (_ex, o) => {
    outcomes.push(o);
    return false;
  };
  let cancels = 0;
  return {
    ex,
    outcomes,
    cancelled: () => cancels,
    link: (sentAt, headTimeoutMs) => {
      const link: AttemptLink = {
        ready: true,
        sentAt,
        headTimeoutMs,
        write: () => true,
        cancel: () => {
          cancels++;
        },
      };
      ex.link = link;
    },
  };
}

test("an attempt without a route limit is held to its connection's default head timeout, to the millisecond", () => {
  const d = new Deadlines();
  const w = watched();
  w.link(T0, 15_000);
  d.watch(w.ex);
  d.sweep(T0 + 15_000);
  assert.deepEqual(w.outcomes, [], 'not before the limit has passed');
  d.sweep(T0 + 15_001);
  assert.equal(w.cancelled(), 1, 'the attempt is given up');
  assert.equal(w.ex.link, undefined);
  assert.deepEqual(w.outcomes, [{ kind: 'timeout', code: 'TRELLIS_E_TIMEOUT', params: { address: '127.0.0.1:9', ms: 15_000 }, request: false, sentAt: T0 }]);
  assert.equal(d.size, 1, 'still watched: a retry has the same limits');
  d.sweep(T0 + 60_000);
  assert.equal(w.outcomes.length, 1, 'reported once: no attempt is in flight any more');
});

test("a route's backendRequest limit takes the place of the default, and an attempt still connecting is not timed", () => {
  const d = new Deadlines();
  const w = watched();
  w.ex.attemptTimeoutMs = 100;
  w.link(0, 15_000); // connecting: nothing sent yet
  d.watch(w.ex);
  d.sweep(T0 + 1_000_000);
  assert.deepEqual(w.outcomes, []);
  w.link(T0, 15_000);
  d.sweep(T0 + 100);
  assert.deepEqual(w.outcomes, []);
  d.sweep(T0 + 101);
  assert.equal(w.outcomes.length, 1);
  assert.deepEqual(w.outcomes[0], { kind: 'timeout', code: 'TRELLIS_E_TIMEOUT', params: { address: '127.0.0.1:9', ms: 100 }, request: false, sentAt: T0 });
});

test('an HTTP/2 stream (no default head timeout) waits as long as its server takes, unless the route says otherwise', () => {
  const d = new Deadlines();
  const w = watched();
  w.link(T0, 0);
  d.watch(w.ex);
  d.sweep(T0 + 24 * 3600_000);
  assert.deepEqual(w.outcomes, []);
  assert.equal(w.cancelled(), 0);
});

test("the request's deadline ends it wherever it is, an attempt in flight or a backoff between two, and the watch with it", () => {
  const d = new Deadlines();
  const inFlight = watched();
  const between = watched();
  for (const w of [inFlight, between]) {
    w.ex.deadline = T0 + 500;
    d.watch(w.ex);
  }
  inFlight.link(T0 + 10, 15_000);
  d.sweep(T0 + 499);
  assert.deepEqual([...inFlight.outcomes, ...between.outcomes], []);
  d.sweep(T0 + 500);
  assert.equal(inFlight.cancelled(), 1);
  const params = { route: '', ms: Math.round(T0 + 500 - inFlight.ex.startedAt) };
  assert.deepEqual(inFlight.outcomes, [{ kind: 'timeout', code: 'TRELLIS_E_REQUEST_TIMEOUT', params, request: true, sentAt: T0 + 10 }]);
  assert.deepEqual(between.outcomes, [
    { kind: 'timeout', code: 'TRELLIS_E_REQUEST_TIMEOUT', params: { route: '', ms: Math.round(T0 + 500 - between.ex.startedAt) }, request: true, sentAt: 0 },
  ]);
  assert.equal(d.size, 0);
});

test('an exchange answered (its head on the way) or over is let go at the next sweep, never timed out', () => {
  const d = new Deadlines();
  const answered = watched();
  const over = watched();
  answered.link(T0, 10);
  over.link(T0, 10);
  d.watch(answered.ex);
  d.watch(over.ex);
  answered.ex.responseStarted = true;
  over.ex.finished = true;
  d.sweep(T0 + 1000);
  assert.deepEqual([...answered.outcomes, ...over.outcomes], []);
  assert.equal(d.size, 0);
});
