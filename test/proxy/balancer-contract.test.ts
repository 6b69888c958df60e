// One contract, every balancer (as hono runs one suite over all its routers): a pick
// comes from the backend's endpoints; no endpoints is a failure with a code; a request
// is not sent back to an endpoint it already tried while another is left; an endpoint
// that refused a connection is avoided while others can serve; every endpoint gets
// traffic; weight 0 takes none while others can; the load callbacks are safe to call.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../../src/api/protocol.js';
import type { Balancer } from '../../src/proxy/balancer/balancer.js';
import { LeastRequestBalancer } from '../../src/proxy/balancer/least-request.js';
import { MaglevBalancer } from '../../src/proxy/balancer/maglev.js';
import { PeakEwmaBalancer } from '../../src/proxy/balancer/peak-ewma.js';
import { RandomBalancer } from '../../src/proxy/balancer/random.js';
import { RingHashBalancer } from '../../src/proxy/balancer/ring-hash.js';
import { RoundRobinBalancer } from '../../src/proxy/balancer/round-robin.js';
import { ep } from '../helpers/balancing.js';

const KINDS: Record<string, { make: (e: readonly Endpoint[]) => Balancer; hashed: boolean }> = {
  'round robin': { make: (e) => new RoundRobinBalancer(e), hashed: false },
  random: { make: (e) => new RandomBalancer(e), hashed: false },
  'least request': { make: (e) => new LeastRequestBalancer(e), hashed: false },
  'peak EWMA': { make: (e) => new PeakEwmaBalancer(e), hashed: false },
  'ring hash': { make: (e) => new RingHashBalancer(e), hashed: true },
  maglev: { make: (e) => new MaglevBalancer(e), hashed: true },
};

const three = [ep('a', 1), ep('b', 2), ep('c', 3)];

/**
 * Picks `n` times (each a fresh request: a new key for the hashing ones) with 6 requests
 * in flight, the oldest finishing as a new one starts, every one taking 30 ms: endpoints
 * that all answer alike, so a load-aware balancer must spread by load and weight alone.
 */
function spread(b: Balancer, n: number, hashed: boolean): Map<string, number> {
  const seen = new Map<string, number>();
  const inflight: Endpoint[] = [];
  for (let i = 0; i < n; i++) {
    const r = b.pick(undefined, hashed ? `user-${i}` : undefined);
    assert.equal(r.type, 'pick');
    if (r.type !== 'pick') continue;
    b.started(r.endpoint);
    inflight.push(r.endpoint);
    if (inflight.length > 6) b.finished(inflight.shift()!, 30, false);
    seen.set(r.endpoint.id, (seen.get(r.endpoint.id) ?? 0) + 1);
  }
  return seen;
}

for (const [name, { make, hashed }] of Object.entries(KINDS)) {
  describe(`balancer contract: ${name}`, () => {
    it('picks only from its endpoints, and fails with no-endpoints when it has none', () => {
      const b = make(three);
      for (let i = 0; i < 50; i++) {
        const r = b.pick(undefined, hashed ? `k${i}` : undefined);
        assert.equal(r.type, 'pick');
        if (r.type === 'pick') assert.ok(three.includes(r.endpoint));
      }
      assert.deepEqual(make([]).pick(), { type: 'fail', code: 'TRELLIS_E_NO_ENDPOINTS' });
      assert.deepEqual(make([]).pick(undefined, 'key'), { type: 'fail', code: 'TRELLIS_E_NO_ENDPOINTS' });
    });

    it('does not send a request back to an endpoint it tried while another is left, and fails when all were tried', () => {
      const b = make(three);
      for (let i = 0; i < 30; i++) {
        const key = hashed ? `k${i}` : undefined;
        const first = b.pick(undefined, key);
        assert.equal(first.type, 'pick');
        if (first.type !== 'pick') continue;
        const tried = new Set([first.endpoint.id]);
        const second = b.pick(tried, key);
        assert.equal(second.type, 'pick');
        if (second.type === 'pick') assert.notEqual(second.endpoint.id, first.endpoint.id);
      }
      assert.equal(b.pick(new Set(['a', 'b', 'c']), hashed ? 'k' : undefined).type, 'fail');
    });

    it('avoids an endpoint that refused a connection while others can serve, and uses it when it is the last', () => {
      const b = make(three);
      b.connectFailed(three[1]!, Date.now());
      for (let i = 0; i < 60; i++) {
        const r = b.pick(undefined, hashed ? `k${i}` : undefined);
        assert.ok(r.type === 'pick' && r.endpoint.id !== 'b', `pick ${i} went to the refusing endpoint`);
      }
      const r = b.pick(new Set(['a', 'c']), hashed ? 'k' : undefined);
      assert.ok(r.type === 'pick' && r.endpoint.id === 'b', 'a recently refusing endpoint beats failing');
    });

    it('sends every endpoint a share of many requests, and none to an endpoint weighted 0 while others can serve', () => {
      const seen = spread(make(three), 3000, hashed);
      for (const e of three) assert.ok((seen.get(e.id) ?? 0) > 600, `${e.id} got ${seen.get(e.id) ?? 0} of 3000`);
      const weighted = spread(make([ep('a', 1), ep('b', 2, 0), ep('c', 3)]), 600, hashed);
      assert.equal(weighted.get('b') ?? 0, 0);
    });

    it('takes started/finished/failed reports for endpoints it no longer has without harm', () => {
      const b = make(three);
      const gone = ep('gone', 9);
      b.started(gone);
      b.finished(gone, 5, true);
      b.connectFailed(gone, Date.now());
      assert.equal(b.pick(undefined, hashed ? 'k' : undefined).type, 'pick');
    });
  });
}

describe('balancer contract: weights', () => {
  for (const name of ['random', 'least request', 'peak EWMA', 'ring hash', 'maglev']) {
    it(`${name} sends traffic in proportion to endpoint weights (3:1 within tolerance)`, () => {
      const { make, hashed } = KINDS[name]!;
      const seen = spread(make([ep('heavy', 1, 3), ep('light', 2, 1)]), 4000, hashed);
      const share = (seen.get('heavy') ?? 0) / 4000;
      assert.ok(share > 0.68 && share < 0.82, `heavy got ${(share * 100).toFixed(1)}%`);
    });
  }
});
