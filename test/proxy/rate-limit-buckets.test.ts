// Local rate limits without sockets: token bucket math on a fake clock, the bounded key
// table, which limits a request meets (per route, per caller, per header value), and
// the IETF header fields' format (draft-ietf-httpapi-ratelimit-headers-11/-12).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RateLimitSnapshot } from '../../src/api/protocol.js';
import { TokenBucket } from '../../src/proxy/ratelimit/token-bucket.js';
import { KeyTable } from '../../src/proxy/ratelimit/key-table.js';
import { headerKey, RateLimits } from '../../src/proxy/ratelimit/rate-limits.js';
import { limitItem, policyItem, retryAfterSeconds } from '../../src/proxy/ratelimit/headers.js';
import { Exchange, type ClientSide } from '../../src/proxy/stack/exchange.js';
import type { RequestHead } from '../../src/http1/http1-parser.js';
import type { WorkloadName } from '../../src/security/spiffe.js';

test('a token bucket gives its burst at once, then exactly its rate, on a fake clock', () => {
  let now = 1000;
  const b = new TokenBucket(10 / 1000, 5, now); // 10 per second, burst 5
  let taken = 0;
  const take = (): boolean => {
    b.refill(now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    taken++;
    return true;
  };
  for (let i = 0; i < 8; i++) take();
  assert.equal(taken, 5, 'the burst, then nothing');
  assert.equal(b.msUntil(1), 100, 'one token per 100 ms');
  // 10 s of one attempt per ms: 100 more, no matter how often it is asked.
  for (let t = 0; t < 10_000; t++) {
    now++;
    take();
  }
  assert.equal(taken, 105);
  // A quiet minute refills to the burst, no further.
  now += 60_000;
  b.refill(now);
  assert.equal(b.tokens, 5);
  // A new rate keeps what accrued, up to the new size.
  b.setRate(1 / 1000, 2, now);
  assert.equal(b.tokens, 2);
  assert.equal(b.capacity, 2);
});

test('the key table holds at most maxKeys, dropping the least recently used and reusing its bucket', () => {
  const t = new KeyTable(3, 1 / 1000, 1);
  const a = t.bucket('a', 0);
  t.bucket('b', 0);
  t.bucket('c', 0);
  a.tokens = 0;
  t.bucket('a', 1); // a is now the most recently used
  const d = t.bucket('d', 2); // evicts b
  assert.equal(t.size, 3);
  assert.equal(t.evictions, 1);
  assert.equal(t.bucket('a', 2), a, 'a kept its bucket (and its spent tokens)');
  assert.equal(a.tokens < 1, true);
  assert.equal(d.tokens, 1, 'a reused bucket starts full');
  // A client cycling 100,000 header values: the table stays at 3.
  for (let i = 0; i < 100_000; i++) t.bucket(`v${i}`, 3);
  assert.equal(t.size, 3);
  assert.equal(t.evictions, 1 + 100_000, 'every new value evicted one');
});

test('a header key is the first value, trimmed; absent is one shared key; a long value is hashed, bounded', () => {
  assert.equal(headerKey(['Host: x', 'X-Api-Key:  k1 ', 'x-api-key: k2'], 'x-api-key'), 'k1');
  assert.equal(headerKey(['host: x'], 'x-api-key'), '');
  const long = 'z'.repeat(10_000);
  const k = headerKey([`x-api-key: ${long}`], 'x-api-key');
  assert.ok(k.length < 40 && k.startsWith('#'), k);
  assert.notEqual(k, headerKey([`x-api-key: ${long}y`], 'x-api-key'));
});

test('RateLimit-Policy and RateLimit items and Retry-After have the draft syntax', () => {
  assert.equal(policyItem('per-caller', 100, 60_000), '"per-caller";q=100;w=60');
  assert.equal(policyItem('fast', 5, 100), '"fast";q=50;w=1', 'a sub-second window is advertised per second');
  assert.equal(limitItem('per-caller', 49.7, 0.2), '"per-caller";r=49;t=1');
  assert.equal(retryAfterSeconds(1), 1);
  assert.equal(retryAfterSeconds(1500), 2);
});

/** The verified peer of each test caller: one object per workload, as a connection holds one. */
const peers = new Map<string, WorkloadName>();
function peerOf(key: string): WorkloadName {
  let p = peers.get(key);
  if (p === undefined) {
    const [namespace, name] = key.includes('/') ? key.split('/') : ['default', key];
    peers.set(key, (p = { trustDomain: 'cluster.local', namespace: namespace!, serviceAccount: name! }));
  }
  return p;
}

/** `source`: the caller's workload (`ns/name`, or a name in default); null: a plaintext caller with no peer. */
function exchange(method: string, path: string, lines: string[], source: string | null = 'web'): Exchange {
  const req = { method, target: path, path, host: 'api', lines, keepAlive: true, contentLength: 0, chunked: false } as unknown as RequestHead;
  const client = { socket: {} } as unknown as ClientSide;
  const ex = new Exchange(client, req, Buffer.alloc(0));
  if (source === null) ex.source = 'unknown';
  else {
    ex.peer = peerOf(source);
    // The identity layer's source is the service name alone: what the limit must not key on.
    ex.source = source.split('/').pop()!;
  }
  return ex;
}

const limit = (over: Partial<RateLimitSnapshot>): RateLimitSnapshot => ({
  id: `default/p/${over.name ?? 'l'}`,
  policy: 'default/p',
  name: 'l',
  requests: 2,
  intervalMs: 1000,
  burst: 2,
  ...over,
});

test('limits by caller and by header value keep separate buckets; a refusal takes no token from the others', () => {
  const now = 0;
  const rl = new RateLimits(
    {
      limits: [
        limit({ name: 'per-caller', key: { source: true }, maxKeys: 10 }),
        limit({ name: 'per-key', key: { header: 'x-api-key' }, maxKeys: 10, requests: 3, burst: 3 }),
      ],
    },
    undefined,
    now,
  );
  const admit = (ex: Exchange) => rl.admit(ex, rl.limitsFor(ex), now);
  assert.equal(admit(exchange('GET', '/', ['x-api-key: a'], 'web')), undefined);
  assert.equal(admit(exchange('GET', '/', ['x-api-key: a'], 'web')), undefined);
  const third = admit(exchange('GET', '/', ['x-api-key: a'], 'web'));
  assert.equal(third?.limit.spec.name, 'per-caller', 'web spent its 2');
  // Another caller with the same key: key a has one token left (web's refusal took none).
  assert.equal(admit(exchange('GET', '/', ['x-api-key: a'], 'batch')), undefined);
  assert.equal(admit(exchange('GET', '/', ['x-api-key: a'], 'batch'))?.limit.spec.name, 'per-key');
  assert.equal(admit(exchange('GET', '/', ['x-api-key: b'], 'batch')), undefined, 'key b has its own bucket');
});

test('a per-caller limit keys on the verified peer: same-named services of two namespaces have their own buckets, plaintext callers share one', () => {
  const rl = new RateLimits({ limits: [limit({ name: 'per-caller', key: { source: true }, maxKeys: 10, requests: 1, burst: 1 })] }, undefined, 0);
  const admit = (ex: Exchange) => rl.admit(ex, rl.limitsFor(ex), 0);
  assert.equal(admit(exchange('GET', '/', [], 'shop/web')), undefined);
  assert.equal(admit(exchange('GET', '/', [], 'shop/web'))?.limit.spec.name, 'per-caller', 'shop/web spent its one');
  assert.equal(admit(exchange('GET', '/', [], 'batch/web')), undefined, "batch's web is another caller");
  // Plaintext callers (a PERMISSIVE listener) have no peer: one bucket for all of them, whatever they claim.
  assert.equal(admit(exchange('GET', '/', [], null)), undefined);
  assert.equal(admit(exchange('GET', '/', ['trellis-source: web'], null))?.limit.spec.name, 'per-caller', 'every plaintext caller shares unknown');
});

test('a limit on a rule covers the requests that rule takes, by the service route table; others are not counted', () => {
  const rl = new RateLimits(
    {
      limits: [limit({ name: 'writes', requests: 1, burst: 1, routes: ['default/api/rule/0'] })],
      routes: [
        { name: 'default/api/rule/0', match: { method: 'POST' }, backends: [] },
        { name: 'default/api/rule/1', match: {}, backends: [] },
      ],
    },
    undefined,
    0,
  );
  const admit = (ex: Exchange) => rl.admit(ex, rl.limitsFor(ex), 0);
  assert.equal(admit(exchange('POST', '/orders', [])), undefined);
  assert.equal(admit(exchange('POST', '/orders', []))?.limit.spec.name, 'writes');
  for (let i = 0; i < 5; i++) assert.equal(admit(exchange('GET', '/orders', [])), undefined, 'reads are not limited');
});

test('a new snapshot keeps the buckets of unchanged limits and starts changed ones afresh', () => {
  const spec = limit({ name: 'all', requests: 1, burst: 1 });
  const first = new RateLimits({ limits: [spec] }, undefined, 0);
  first.admit(exchange('GET', '/', []), first.limitsFor(exchange('GET', '/', [])), 0);
  const same = new RateLimits({ limits: [{ ...spec }] }, first, 0);
  assert.ok(same.admit(exchange('GET', '/', []), same.limitsFor(exchange('GET', '/', [])), 0), 'still spent');
  const changed = new RateLimits({ limits: [{ ...spec, requests: 5, burst: 5 }] }, same, 0);
  assert.equal(changed.admit(exchange('GET', '/', []), changed.limitsFor(exchange('GET', '/', [])), 0), undefined, 'a new bucket');
});
