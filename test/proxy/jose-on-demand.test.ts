// jose is loaded when a proxy first has JWT rules, not when it starts
// (src/proxy/authn/jose.ts): in a fresh process, nothing has loaded it before a
// JwtAuthenticator is made; a token checked at once, while jose is still loading, gets
// the verdict it always got (accepted, or refused for a signature by another key).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runModuleScript } from '../helpers/module-child.js';

const src = (m: string): string => JSON.stringify(new URL(`../../src/${m}`, import.meta.url).href);

// Tokens are signed with node:crypto (ES256: the signature as r || s), so the child loads jose only through the proxy's code.
const CHILD = `
import { generateKeyPairSync, sign } from 'node:crypto';
import { keySetOf, StaticJwks } from ${src('proxy/authn/jwks-source.js')};
import { JwtAuthenticator } from ${src('proxy/authn/jwt-authenticator.js')};
import { joseNow } from ${src('proxy/authn/jose.js')};
const before = joseNow() !== undefined;
const rule = { policy: 'default/p', issuer: 'https://issuer.example', from: [{ header: 'authorization', prefix: 'Bearer ' }],
  forwardOriginalToken: false, algorithms: ['ES256'], clockSkewMs: 0, maxTokenBytes: 4096 };
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = (key) => {
  const input = b64({ alg: 'ES256', kid: 'a' }) + '.' + b64({ iss: rule.issuer, sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 });
  return input + '.' + sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
};
const good = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys = new StaticJwks(keySetOf({ keys: [{ ...good.publicKey.export({ format: 'jwk' }), kid: 'a' }] }));
const clock = { now: () => Date.now(), setTimeout: () => 0, clearTimeout: () => {} };
const a = new JwtAuthenticator([{ spec: rule, keys, outputs: [] }], clock);
const first = a.check(token(good.privateKey));
const firstWaited = first instanceof Promise && joseNow() === undefined;
const accepted = await first;
const refused = await a.check(token(other.privateKey));
console.log(JSON.stringify({ before, firstWaited, accepted: accepted.kind, principal: accepted.auth?.principal, refused: refused.reason, after: joseNow() !== undefined }));
`;

test('jose is loaded by the first JwtAuthenticator, and a token checked while it loads gets its usual verdict', async () => {
  const r = await runModuleScript<Record<string, unknown>>(CHILD, [], fileURLToPath(new URL('.', import.meta.url)), 20_000);
  assert.deepEqual(r, {
    before: false,
    firstWaited: true,
    accepted: 'accepted',
    principal: 'https://issuer.example/alice',
    refused: 'bad-signature',
    after: true,
  });
});
