// Session affinity with ring hash and Maglev: one key always reaches one endpoint; when
// an endpoint leaves, only a small share of keys move (about the leaver's own share);
// keys spread evenly; and a key whose endpoint can't take a retry gets a stable second
// choice.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../../src/api/protocol.js';
import type { Balancer } from '../../src/proxy/balancer/balancer.js';
import { hash32 } from '../../src/proxy/balancer/hash.js';
import { MaglevBalancer } from '../../src/proxy/balancer/maglev.js';
import { RingHashBalancer } from '../../src/proxy/balancer/ring-hash.js';
import { ep } from '../helpers/balancing.js';

const five = ['a', 'b', 'c', 'd', 'e'].map((id, i) => ep(id, i + 1));
const KEYS = Array.from({ length: 10_000 }, (_, i) => `session-${i}`);

function owners(b: Balancer): string[] {
  return KEYS.map((k) => {
    const r = b.pick(undefined, k);
    assert.equal(r.type, 'pick');
    return r.type === 'pick' ? r.endpoint.id : '';
  });
}

const KINDS: Record<string, (e: readonly Endpoint[]) => Balancer> = {
  'ring hash': (e) => new RingHashBalancer(e),
  maglev: (e) => new MaglevBalancer(e),
};

for (const [name, make] of Object.entries(KINDS)) {
  describe(`affinity: ${name}`, () => {
    it('sends one key to one endpoint, every time and from every proxy', () => {
      const one = make(five);
      const other = make([...five].reverse()); // another proxy, endpoints listed in another order
      for (const k of KEYS.slice(0, 500)) {
        const first = one.pick(undefined, k);
        for (let i = 0; i < 3; i++) assert.deepEqual(one.pick(undefined, k), first);
        const there = other.pick(undefined, k);
        assert.ok(first.type === 'pick' && there.type === 'pick' && first.endpoint.id === there.endpoint.id, `key ${k}`);
      }
    });

    it('spreads keys evenly over the endpoints', () => {
      const counts = new Map<string, number>();
      for (const o of owners(make(five))) counts.set(o, (counts.get(o) ?? 0) + 1);
      for (const e of five) {
        const share = (counts.get(e.id) ?? 0) / KEYS.length;
        assert.ok(share > 0.14 && share < 0.26, `${e.id} owns ${(share * 100).toFixed(1)}% of keys`);
      }
    });

    it("moves only about the leaving endpoint's share of keys when one leaves, and none between the others", () => {
      const before = owners(make(five));
      const after = owners(make(five.filter((e) => e.id !== 'c')));
      let moved = 0;
      for (let i = 0; i < KEYS.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        // Keys owned by the stayers stay (ring hash exactly; Maglev nearly).
        if (name === 'ring hash') assert.equal(before[i], 'c', `key ${KEYS[i]} moved from ${before[i]} to ${after[i]}`);
      }
      const share = moved / KEYS.length;
      assert.ok(share > 0.1 && share < 0.3, `${(share * 100).toFixed(1)}% of keys moved (c owned about 20%)`);
    });

    it('gives a key a stable second choice when its endpoint was tried, and spreads keyless requests', () => {
      const b = make(five);
      for (const k of KEYS.slice(0, 200)) {
        const first = b.pick(undefined, k);
        assert.equal(first.type, 'pick');
        if (first.type !== 'pick') continue;
        const tried = new Set([first.endpoint.id]);
        const second = b.pick(tried, k);
        assert.ok(second.type === 'pick' && second.endpoint.id !== first.endpoint.id);
        assert.deepEqual(b.pick(tried, k), second, 'the same second choice each time');
      }
      const seen = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const r = b.pick();
        if (r.type === 'pick') seen.add(r.endpoint.id);
      }
      assert.equal(seen.size, 5, 'requests without a key go everywhere');
    });
  });
}

describe('affinity hash', () => {
  it('is deterministic, 32-bit, and seeds change it', () => {
    assert.equal(hash32('user-1'), hash32('user-1'));
    assert.notEqual(hash32('user-1'), hash32('user-2'));
    assert.notEqual(hash32('user-1', 1), hash32('user-1'));
    for (const k of KEYS.slice(0, 100)) {
      const h = hash32(k);
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    }
  });

  it('sizes a Maglev table to a prime at least 100 × the endpoints', () => {
    assert.equal(new MaglevBalancer(five).size, 503);
    assert.equal(new MaglevBalancer(five.slice(0, 3)).size, 307);
  });
});
