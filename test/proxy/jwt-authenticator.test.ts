// The verdicts of the JWT authenticator without a listener: the request principal and
// claims authorization reads (`iss/sub`), the bounded verdict cache (entries and bytes,
// least recently used out first, emptied when keys change), and a cache hit that costs no
// signature check (answered synchronously).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { JwtRuleSnapshot } from '../../src/api/protocol.js';
import { keySetOf, StaticJwks, type AuthnClock } from '../../src/proxy/authn/jwks-source.js';
import { JwtAuthenticator, type Verdict } from '../../src/proxy/authn/jwt-authenticator.js';

const T0 = Date.parse('2027-03-01T00:00:00Z');
const clock: AuthnClock & { t: number } = { t: T0, now: () => clock.t, setTimeout: () => 0, clearTimeout: () => {} };

const rule: JwtRuleSnapshot = {
  policy: 'default/p',
  issuer: 'https://issuer.example',
  from: [{ header: 'authorization', prefix: 'Bearer ' }],
  forwardOriginalToken: false,
  algorithms: ['ES256'],
  clockSkewMs: 0,
  maxTokenBytes: 4096,
};

async function setup(limits = { entries: 2, bytes: 1_000_000, ttlMs: 60_000 }) {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const keys = new StaticJwks(keySetOf({ keys: [{ ...(await exportJWK(publicKey)), kid: 'a', kty: 'EC' }] }));
  const a = new JwtAuthenticator([{ spec: rule, keys, outputs: [] }], clock, limits);
  const sign = (sub: string, extra: Record<string, unknown> = {}) =>
    new SignJWT({ iss: rule.issuer, sub, exp: Math.floor(clock.t / 1000) + 600, ...extra }).setProtectedHeader({ alg: 'ES256', kid: 'a' }).sign(privateKey);
  return { a, sign };
}

test('a good token gives the request principal iss/sub and its claims', async () => {
  const { a, sign } = await setup();
  const v = await a.check(await sign('alice', { groups: ['admin'] }));
  assert.equal(v.kind, 'accepted');
  assert.equal(v.kind === 'accepted' && v.auth.principal, 'https://issuer.example/alice');
  assert.deepEqual(v.kind === 'accepted' && v.auth.claims.groups, ['admin']);
  assert.ok(v.kind === 'accepted' && Object.isFrozen(v.auth.claims), 'claims are read-only for the layers after');
});

test('a kept verdict is answered at once, without a promise; the cache holds at most its entries, least recently used out first', async () => {
  const { a, sign } = await setup();
  const [t1, t2, t3] = await Promise.all([sign('one'), sign('two'), sign('three')]);
  for (const t of [t1, t2]) await a.check(t);
  assert.equal(a.cached, 2);
  const hit: Verdict | Promise<Verdict> = a.check(t1);
  assert.ok(!(hit instanceof Promise), 'a hit is synchronous');
  await a.check(t3); // t2 is now the least recently used
  assert.equal(a.cached, 2);
  assert.ok(!(a.check(t1) instanceof Promise));
  assert.ok(a.check(t2) instanceof Promise, 't2 was dropped');
  a.clearCache();
  assert.equal(a.cached, 0);
});

test('the cache is bounded in bytes too', async () => {
  const { a, sign } = await setup({ entries: 100, bytes: 700, ttlMs: 60_000 });
  const tokens = await Promise.all(['a', 'b', 'c', 'd'].map((s) => sign(s)));
  for (const t of tokens) await a.check(t);
  assert.ok(a.cached * tokens[0]!.length <= 700, `${a.cached} tokens of ${tokens[0]!.length} bytes`);
  assert.ok(a.cached >= 1);
});

test('a kept verdict ends at exp (no skew here) and after the cache ttl', async () => {
  const { a, sign } = await setup({ entries: 10, bytes: 1_000_000, ttlMs: 60_000 });
  const t = await sign('x', { exp: Math.floor(clock.t / 1000) + 30 });
  assert.equal((await a.check(t)).kind, 'accepted');
  clock.t += 31_000;
  const v = await a.check(t);
  assert.deepEqual(v, { kind: 'refused', reason: 'expired' });
  clock.t = T0;
});
