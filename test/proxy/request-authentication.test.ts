// End-user JWT authentication (RequestAuthentication) through real sidecars: a client
// calls web's outbound sidecar, which sends to echo's inbound sidecar, which checks the
// token before echo's app sees the request. One suite over HTTP/1.1 and HTTP/2. Snapshots
// come from the real compiler; the JWKS URL is a loopback server this test starts and
// stops; exp, nbf and key refreshes run on a fake clock. Every bad token is a clear 401
// (RFC 6750 WWW-Authenticate, `invalid-token`), counted by reason, and no log line or
// access-log line holds a token.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from 'jose';
import type { ProxyInfo, Snapshot } from '../../src/api/protocol.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { ControlConfig } from '../../src/control/sources/mesh-config.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import type { RenewalClock } from '../../src/proxy/tls/certificate-renewer.js';
import { config, service, sidecar, tempDir } from '../control/helpers.js';
import { openClient, WIRE_PROTOCOLS, type Reply } from '../helpers/client.js';
import { eventually } from '../helpers/eventually.js';
import { closeServer, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const T0 = Date.parse('2027-03-01T00:00:00Z');
const S = 1000;

/** A clock whose timers fire only when the test advances it. */
class FakeClock implements RenewalClock {
  t = T0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#next;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  advance(ms: number): void {
    const to = this.t + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, v]) => v.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = to;
  }
}

const ISSUER = 'https://issuer.example';
const URL_ISSUER = 'https://rotating.example';
const DOWN_ISSUER = 'https://down.example';
const FWD_ISSUER = 'https://forwarding.example';
const AUDIENCE = 'shop';

type Keys = { privateKey: CryptoKey; publicKey: CryptoKey; jwk: JWK };
async function keys(alg: 'RS256' | 'ES256', kid: string): Promise<Keys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** A token signed by `k` at the fake clock's time (unless the claims say otherwise). */
function sign(k: Keys, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(clock.t / S);
  return new SignJWT({ iss: ISSUER, sub: 'alice', aud: AUDIENCE, iat: now, exp: now + 600, ...claims })
    .setProtectedHeader({ alg: k.jwk.alg as string, kid: k.jwk.kid as string, ...header })
    .sign(k.privateKey);
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

const clock = new FakeClock();
let k1: Keys; // the inline key of ISSUER
let other: Keys; // a key nobody trusts, with k1's kid
let u1: Keys; // the URL issuer's first key
let u2: Keys; // ... and the one it rotates to
let app: { server: http.Server; port: number };
let jwksServer: http.Server;
let jwksPort = 0;
let jwksBody = '';
let jwksFetches = 0;
let inbound: Sidecar;
let outbound: Sidecar;
const logs: string[] = [];
const tokensUsed: string[] = [];
let accessLogFile = '';
let removeTemp: () => Promise<void> = async () => {};

function meshConfig(jwks1: string, jwksUri: string, downUri: string): ControlConfig {
  const base = config([service('web', { upstreams: ['echo'] }), service('echo')]);
  return {
    ...base,
    requestAuthentications: [
      {
        file: 'authn.yaml',
        resource: {
          metadata: { name: 'echo-users' },
          spec: {
            targetRefs: [{ group: '', kind: 'Service', name: 'echo' }],
            jwtRules: [
              { issuer: ISSUER, audiences: [AUDIENCE], outputClaimToHeaders: [{ header: 'x-jwt-sub', claim: 'sub' }], maxTokenBytes: 2048 },
              { issuer: URL_ISSUER, jwksUri, fromParams: ['access_token'], jwksRefreshInterval: '5m', jwksMaxStale: '1h' },
            ],
          },
        },
        jwks: [jwks1, undefined],
      },
      {
        file: 'authn.yaml',
        // Namespace-wide (no targetRefs): its rules apply to echo too.
        resource: {
          metadata: { name: 'everyone' },
          spec: {
            jwtRules: [
              { issuer: DOWN_ISSUER, jwksUri: downUri },
              { issuer: FWD_ISSUER, forwardOriginalToken: true, fromHeaders: [{ name: 'x-token' }] },
            ],
          },
        },
        jwks: [undefined, jwks1],
      },
    ],
  };
}

before(async () => {
  [k1, other, u1, u2] = await Promise.all([keys('RS256', 'k1'), keys('RS256', 'k1'), keys('ES256', 'u1'), keys('ES256', 'u2')]);
  jwksBody = JSON.stringify({ keys: [u1.jwk] });
  jwksServer = http.createServer((_req, res) => {
    jwksFetches++;
    res.setHeader('content-type', 'application/json');
    res.end(jwksBody);
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  jwksPort = (jwksServer.address() as net.AddressInfo).port;
  // A JWKS URL nothing listens at: a server started and stopped, so its port is free.
  const down = http.createServer();
  await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
  const downPort = (down.address() as net.AddressInfo).port;
  await closeServer(down);

  app = await listenHttp((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        url: req.url,
        authorization: req.headers.authorization ?? null,
        sub: req.headers['x-jwt-sub'] ?? null,
        xToken: req.headers['x-token'] ?? null,
      }),
    );
  });
  const tmp = await tempDir();
  removeTemp = tmp.remove;
  accessLogFile = `${tmp.dir}/access.log`;
  inbound = await startInbound('echo', 'default', app.port, 'http', {
    sidecar: { authnClock: clock, jwksKidCooldownMs: 0, accessLog: accessLogFile, log: (line) => logs.push(line) },
  });
  const mesh = meshConfig(JSON.stringify({ keys: [k1.jwk] }), `http://127.0.0.1:${jwksPort}/jwks.json`, `http://127.0.0.1:${downPort}/jwks.json`);
  const instances = [{ id: 'echo-0', service: 'echo', version: 'default', inbound: inbound.addresses.inbound!, status: 'healthy' as const }];
  const echoProxy: ProxyInfo = sidecar('echo-0', 'echo');
  const own = compileSnapshot({ config: mesh, instances, proxy: echoProxy });
  inbound.apply({ ...own, version: 2 } as Snapshot);
  const web: ProxyInfo = sidecar('web-0', 'web', 'default', { upstreams: [{ service: 'echo', listen: { host: '127.0.0.1', port: 0 } }] });
  const webSnap = compileSnapshot({ config: mesh, instances, proxy: web });
  assert.deepEqual(
    webSnap.requestAuthentication?.rules.map((r) => r.policy),
    ['default/everyone', 'default/everyone'],
    "web gets the namespace-wide policy's rules, not those of the policy that targets echo",
  );
  const echo = webSnap.upstreams.echo;
  assert.ok(echo);
  outbound = await startOutbound('web', { echo });
  // The URL issuer's keys arrive in the background.
  await eventually(() => jwksFetches >= 1 && inbound.authn.current?.rules[1]?.keys.current() !== undefined, { what: 'the first JWKS fetch' });
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
  if (jwksServer?.listening) await closeServer(jwksServer);
  await removeTemp();
});

/** What echo's app saw. */
function seen(r: Reply): { url: string; authorization: string | null; sub: string | null; xToken: string | null } {
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

function assertRefused(r: Reply, reason: string): void {
  assert.equal(r.status, 401, r.body);
  assert.equal(r.error, 'invalid-token');
  const www = String(r.headers['www-authenticate']);
  assert.match(www, /^Bearer realm="echo", error="invalid_token", error_description="[^"\\]+"$/);
  assert.equal(JSON.parse(r.body).code, 'TRELLIS_E_JWT_INVALID');
  assert.match(JSON.parse(r.body).message, new RegExp(`\\(${reason}\\)`));
}

test('the compiler gives echo the rules of the policy that targets it and of the namespace-wide one, with defaults', () => {
  const rules = inbound.snapshot?.requestAuthentication?.rules ?? [];
  assert.deepEqual(
    rules.map((r) => [r.policy, r.issuer, r.jwksUri === undefined ? 'inline' : 'uri', r.forwardOriginalToken, r.clockSkewMs, r.maxTokenBytes]),
    [
      ['default/echo-users', ISSUER, 'inline', false, 60_000, 2048],
      ['default/echo-users', URL_ISSUER, 'uri', false, 60_000, 8192],
      ['default/everyone', DOWN_ISSUER, 'uri', false, 60_000, 8192],
      ['default/everyone', FWD_ISSUER, 'inline', true, 60_000, 8192],
    ],
  );
  assert.deepEqual(rules[0]?.from, [{ header: 'authorization', prefix: 'Bearer ' }]);
  assert.deepEqual(rules[0]?.algorithms, ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);
  assert.equal(rules[1]?.jwksRefreshMs, 300_000);
  assert.equal(rules[1]?.jwksMaxStaleMs, 3_600_000);
});

for (const protocol of WIRE_PROTOCOLS) {
  describe(`over ${protocol}`, () => {
    const client = () => openClient(protocol, outbound.addresses.upstreams.echo!.port);
    const call = async (headers: Record<string, string> = {}, path = '/hello'): Promise<Reply> => {
      const c = client();
      try {
        return await c.request('GET', path, headers);
      } finally {
        await c.close();
      }
    };
    const bearer = (t: string) => {
      tokensUsed.push(t);
      return { authorization: `Bearer ${t}` };
    };

    test('a request without a token passes (authorization decides about it), and a client-sent claim header is dropped', async () => {
      const s = seen(await call({ 'x-jwt-sub': 'mallory' }));
      assert.equal(s.sub, null);
      assert.equal(s.authorization, null);
    });

    test('a valid token passes: the app gets the claim header and not the token (Istio strips it)', async () => {
      const s = seen(await call({ ...bearer(await sign(k1)), 'x-jwt-sub': 'mallory' }));
      assert.equal(s.sub, 'alice');
      assert.equal(s.authorization, null);
    });

    test('the same token again is answered from the verdict cache', async () => {
      const t = await sign(k1, { sub: `cached-${protocol}` });
      seen(await call(bearer(t)));
      const before = await metricsText(inbound);
      const s = seen(await call(bearer(t)));
      assert.equal(s.sub, `cached-${protocol}`);
      const hits = (text: string) => Number(/trellis_proxy_jwt_verified_total\{cache="hit"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
      assert.equal(hits(await metricsText(inbound)), hits(before) + 1);
    });

    test('a rule with forwardOriginalToken passes the token on, from its own header', async () => {
      const t = await sign(k1, { iss: FWD_ISSUER });
      tokensUsed.push(t);
      const s = seen(await call({ 'x-token': t }));
      assert.equal(s.xToken, t);
    });

    test('a token in a query parameter is read, checked and taken out of the path', async () => {
      const t = await sign(u1, { iss: URL_ISSUER });
      tokensUsed.push(t);
      const s = seen(await call({}, `/q?a=1&access_token=${t}&b=2`));
      assert.equal(s.url, '/q?a=1&b=2');
    });

    test('malformed tokens are refused 401 invalid_token', async () => {
      for (const t of ['not-a-jwt', 'a.b', 'a.b.c.d.e', `${b64({ alg: 'RS256' })}.!!!.sig`, `${b64('{')}.${b64({ iss: ISSUER })}.c2ln`]) {
        assertRefused(await call(bearer(t)), 'malformed');
      }
    });

    test('two different tokens in one request are refused: which one the app would read is not ours to guess', async () => {
      const c = client();
      try {
        const t1 = await sign(k1);
        const t2 = await sign(k1, { iss: FWD_ISSUER });
        tokensUsed.push(t1, t2);
        assertRefused(await c.request('GET', '/', { authorization: `Bearer ${t1}`, 'x-token': t2 }), 'malformed');
      } finally {
        await c.close();
      }
    });

    test('an oversize token is refused before it is parsed', async () => {
      assertRefused(await call(bearer(`${'a'.repeat(9000)}.b.c`)), 'too-large');
      // Under the proxy-wide bound but over its own rule's maxTokenBytes (2048).
      assertRefused(await call(bearer(await sign(k1, { pad: 'x'.repeat(2100) }))), 'too-large');
    });

    test('alg none is refused', async () => {
      const t = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: ISSUER, sub: 'alice', aud: AUDIENCE, exp: Math.floor(clock.t / S) + 60 })}.`;
      assertRefused(await call(bearer(t)), 'alg-not-allowed');
    });

    test('an HS256 token signed with the RSA public key as its secret is refused (key confusion)', async () => {
      const pem = await exportSPKI(k1.publicKey);
      const now = Math.floor(clock.t / S);
      const t = await new SignJWT({ iss: ISSUER, sub: 'mallory', aud: AUDIENCE, exp: now + 600 })
        .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
        .sign(new TextEncoder().encode(pem));
      assertRefused(await call(bearer(t)), 'alg-not-allowed');
    });

    test('an unknown kid, a bad signature, a wrong issuer and a wrong audience are refused, each with its reason', async () => {
      assertRefused(await call(bearer(await sign(k1, {}, { kid: 'nope' }))), 'unknown-kid');
      assertRefused(await call(bearer(await sign(other))), 'bad-signature');
      assertRefused(await call(bearer(await sign(k1, { iss: 'https://evil.example' }))), 'unknown-issuer');
      assertRefused(await call(bearer(await sign(k1, { aud: 'someone-else' }))), 'wrong-audience');
    });

    test('exp and nbf hold with the clock skew (60 s), on the proxy clock', async () => {
      const now = Math.floor(clock.t / S);
      seen(await call(bearer(await sign(k1, { exp: now - 30 }))));
      assertRefused(await call(bearer(await sign(k1, { exp: now - 120 }))), 'expired');
      seen(await call(bearer(await sign(k1, { nbf: now + 30 }))));
      assertRefused(await call(bearer(await sign(k1, { nbf: now + 120 }))), 'not-yet-valid');
    });

    test('a kept verdict ends with its token: past exp the same token is refused', async () => {
      const now = Math.floor(clock.t / S);
      const t = await sign(k1, { exp: now + 10, sub: `short-${protocol}` });
      seen(await call(bearer(t)));
      clock.advance(71 * S);
      assertRefused(await call(bearer(t)), 'expired');
    });

    test('a gRPC call with a bad token gets UNAUTHENTICATED', async () => {
      if (protocol !== 'HTTP/2') return;
      const c = client();
      try {
        const r = await c.request('POST', '/pkg.Svc/Call', { 'content-type': 'application/grpc', authorization: 'Bearer x.y.z' }, '');
        assert.equal(r.status, 200);
        assert.equal(r.headers['grpc-status'], '16');
        assert.equal(r.error, 'invalid-token');
        assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/);
      } finally {
        await c.close();
      }
    });
  });
}

test('a JWKS that rotates: a new kid triggers a refetch and then passes; the old key stops working', async () => {
  const old = await sign(u1, { iss: URL_ISSUER, sub: 'before-rotation' });
  tokensUsed.push(old);
  const c = openClient('HTTP/1.1', outbound.addresses.upstreams.echo!.port);
  try {
    assert.equal((await c.request('GET', `/?access_token=${old}`)).status, 200);
    jwksBody = JSON.stringify({ keys: [u2.jwk] });
    const fresh = await sign(u2, { iss: URL_ISSUER, sub: 'after-rotation' });
    tokensUsed.push(fresh);
    // The first request with the new kid is refused (nothing waits for a fetch), and starts one.
    const fetches = jwksFetches;
    const first = await c.request('GET', `/?access_token=${fresh}`);
    assert.equal(first.status, 401);
    await eventually(() => jwksFetches > fetches, { what: 'a refetch started by the unknown kid' });
    await eventually(async () => assert.equal((await c.request('GET', `/?access_token=${fresh}`)).status, 200));
    // The old key is gone: its token's kept verdict was dropped with it.
    const r = await c.request('GET', `/?access_token=${old}`);
    assert.equal(r.status, 401);
    assert.match(JSON.parse(r.body).message, /\(unknown-kid\)/);
  } finally {
    await c.close();
  }
});

test('the JWKS is fetched again every refresh interval, on the proxy clock', async () => {
  // Every fetch the server saw has settled (a refused old kid may have started one), so the next is the interval's.
  const settled = async () => {
    const text = await metricsText(inbound);
    const n = (result: string) => Number(new RegExp(`trellis_proxy_jwks_fetches_total\\{result="${result}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
    return n('changed') + n('unchanged') === jwksFetches;
  };
  await eventually(settled, { what: 'the fetches in flight to settle' });
  const fetches = jwksFetches;
  clock.advance(5 * 60 * S);
  await eventually(() => jwksFetches === fetches + 1, { what: 'the refresh fetch' });
  await eventually(settled, { what: 'the refresh fetch to settle' });
});

test('an unreachable JWKS URL: its tokens are refused jwks-unavailable, others pass; last good keys outlive failures up to jwksMaxStale', async () => {
  const c = openClient('HTTP/2', outbound.addresses.upstreams.echo!.port);
  try {
    // DOWN_ISSUER's URL never answered: its tokens can't be checked.
    const down = await sign(k1, { iss: DOWN_ISSUER });
    tokensUsed.push(down);
    assertRefused(await c.request('GET', '/', { authorization: `Bearer ${down}` }), 'jwks-unavailable');
    assert.equal((await c.request('GET', '/')).status, 200);
    // The rotating URL goes down: its last keys stay in use...
    const t = await sign(u2, { iss: URL_ISSUER, sub: 'while-down', exp: Math.floor(clock.t / S) + 7200 });
    tokensUsed.push(t);
    await closeServer(jwksServer);
    clock.advance(5 * 60 * S);
    await eventually(() => logs.some((l) => /jwks http:\/\/127\.0\.0\.1:\d+\/jwks\.json: fetch failed/.test(l) && l.includes(String(jwksPort))), {
      what: 'the failed fetch logged',
    });
    assert.equal((await c.request('GET', `/?access_token=${t}`)).status, 200);
    // ...until jwksMaxStale (1h) after the last good fetch.
    for (let i = 0; i < 12; i++) clock.advance(5 * 60 * S);
    const r = await c.request('GET', `/?access_token=${t}`);
    assertRefused(r, 'jwks-unavailable');
    assert.equal(
      logs.filter((l) => l.includes(`127.0.0.1:${jwksPort}`) && l.includes('fetch failed')).length,
      1,
      'one line when fetching starts failing, not one per attempt',
    );
  } finally {
    await c.close();
  }
});

test('refusals are counted by reason, with no other label value a client picks', async () => {
  const text = await metricsText(inbound);
  for (const reason of [
    'malformed',
    'too-large',
    'alg-not-allowed',
    'unknown-kid',
    'bad-signature',
    'unknown-issuer',
    'wrong-audience',
    'expired',
    'not-yet-valid',
    'jwks-unavailable',
  ]) {
    assert.match(text, new RegExp(`trellis_proxy_jwt_refused_total\\{reason="${reason}"[^}]*\\} [1-9]`), reason);
  }
  assert.match(text, /trellis_proxy_jwks_fetches_total\{result="failed"[^}]*\} [1-9]/);
  assert.match(text, /trellis_proxy_jwks_fetches_total\{result="changed"[^}]*\} [1-9]/);
});

test('no log line and no access-log line holds a token', async () => {
  await inbound.close();
  const access = await readFile(accessLogFile, 'utf8').catch(() => '');
  assert.ok(access.length > 0, 'the access log was written');
  assert.ok(tokensUsed.length > 10);
  for (const t of tokensUsed) {
    // A token's signature part is what makes it a credential: it must be nowhere.
    const sig = t.split('.')[2] ?? t;
    if (sig.length < 16) continue;
    assert.ok(!access.includes(sig), 'the access log holds no token');
    for (const line of logs) assert.ok(!line.includes(sig), `a log line holds a token: ${line.slice(0, 80)}`);
  }
});
