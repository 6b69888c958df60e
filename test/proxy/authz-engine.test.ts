// The authorization engine's decisions, Istio's semantics case by case: no policy allows,
// DENY wins over ALLOW, any ALLOW policy denies what none allows, `spec: {}` allows
// nothing and `rules: [{}]` everything, a DENY without rules denies nothing, AUDIT only
// notes, dryRun only notes what it would deny; and at L4 (a function of peer and port)
// an ALLOW rule with HTTP-only fields never matches while a DENY rule's count as matching.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuthorizationPolicySnapshot } from '../../src/api/protocol.js';
import { AuthzEngine } from '../../src/proxy/authz/engine.js';
import { normalizePath } from '../../src/proxy/authz/match.js';
import type { Exchange, RequestAuth } from '../../src/proxy/stack/exchange.js';
import type { WorkloadName } from '../../src/security/spiffe.js';

const peer = (name: string, namespace = 'default'): WorkloadName => ({ trustDomain: 'cluster.local', namespace, serviceAccount: name });
const engine = (...policies: AuthorizationPolicySnapshot[]) => new AuthzEngine({ trustDomain: 'cluster.local', policies });
const allow = (name: string, rules: AuthorizationPolicySnapshot['rules']): AuthorizationPolicySnapshot => ({ name: `default/${name}`, action: 'ALLOW', rules });
const deny = (name: string, rules: AuthorizationPolicySnapshot['rules']): AuthorizationPolicySnapshot => ({ name: `default/${name}`, action: 'DENY', rules });

/** Just what the engine reads of an exchange. */
function request(o: { peer?: WorkloadName; method?: string; path?: string; host?: string; headers?: string[]; auth?: RequestAuth }): Exchange {
  return {
    peer: o.peer,
    requestAuth: o.auth,
    req: { method: o.method ?? 'GET', path: o.path ?? '/', host: o.host ?? 'api', lines: o.headers ?? [] },
  } as unknown as Exchange;
}

const http = (e: AuthzEngine, o: Parameters<typeof request>[0], port = 8080) => e.checkHttp(request(o), port)?.result ?? 'allowed';
const tcp = (e: AuthzEngine, p: WorkloadName | undefined, port = 5432) => e.checkTcp(p, port)?.result ?? 'allowed';

describe('authorization decisions (Istio semantics)', () => {
  it('no policy allows everything, known caller or not', () => {
    const e = engine();
    assert.equal(e.empty, true);
    assert.equal(http(e, {}), 'allowed');
    assert.equal(tcp(e, undefined), 'allowed');
  });

  it('an ALLOW policy denies what none of its rules allows (default deny)', () => {
    const e = engine(allow('from-web', [{ from: [{ principals: ['cluster.local/ns/default/sa/web'] }] }]));
    assert.equal(http(e, { peer: peer('web') }), 'allowed');
    assert.equal(http(e, { peer: peer('other') }), 'denied');
    assert.equal(http(e, {}), 'denied', 'an unknown caller has no principal');
    const v = e.checkHttp(request({ peer: peer('other') }), 8080);
    assert.deepEqual(v, { policy: 'default/from-web', action: 'ALLOW', result: 'denied' });
  });

  it('DENY wins over ALLOW, and names its policy', () => {
    const e = engine(allow('all', [{}]), deny('no-admin', [{ to: [{ paths: ['/admin/*'] }] }]));
    assert.equal(http(e, { peer: peer('web'), path: '/x' }), 'allowed');
    assert.deepEqual(e.checkHttp(request({ peer: peer('web'), path: '/admin/users' }), 8080), { policy: 'default/no-admin', action: 'DENY', result: 'denied' });
  });

  it('empty spec allows nothing; rules: [{}] allows everything; DENY without rules denies nothing', () => {
    assert.equal(http(engine(allow('nothing', [])), { peer: peer('web') }), 'denied');
    assert.equal(http(engine(allow('everything', [{}])), {}), 'allowed');
    assert.equal(http(engine(deny('never', [])), { peer: peer('web') }), 'allowed');
    assert.equal(http(engine(deny('always', [{}])), { peer: peer('web') }), 'denied');
  });

  it('principals: exact, prefix and suffix wildcards, presence, and not-forms', () => {
    const e = (p: string[], not?: string[]) => engine(allow('p', [{ from: [{ principals: p, ...(not ? { notPrincipals: not } : {}) }] }]));
    assert.equal(http(e(['cluster.local/ns/ops/sa/*']), { peer: peer('x', 'ops') }), 'allowed');
    assert.equal(http(e(['cluster.local/ns/ops/sa/*']), { peer: peer('x', 'dev') }), 'denied');
    assert.equal(http(e(['*/sa/web']), { peer: peer('web', 'any') }), 'allowed');
    assert.equal(http(e(['*']), { peer: peer('web') }), 'allowed');
    assert.equal(http(e(['*']), {}), 'denied', '* needs a known caller');
    assert.equal(http(e(['*'], ['cluster.local/ns/default/sa/evil']), { peer: peer('evil') }), 'denied');
    // notPrincipals alone lets an unknown caller through (Envoy: no principal is not that principal).
    assert.equal(http(engine(allow('n', [{ from: [{ notPrincipals: ['cluster.local/ns/default/sa/evil'] }] }])), {}), 'allowed');
  });

  it('namespaces and notNamespaces', () => {
    const e = engine(allow('ns', [{ from: [{ namespaces: ['prod', 'stage-*'], notNamespaces: ['stage-old'] }] }]));
    assert.equal(http(e, { peer: peer('a', 'prod') }), 'allowed');
    assert.equal(http(e, { peer: peer('a', 'stage-2') }), 'allowed');
    assert.equal(http(e, { peer: peer('a', 'stage-old') }), 'denied');
    assert.equal(http(e, { peer: peer('a', 'dev') }), 'denied');
  });

  it('methods, paths (exact, prefix, suffix; normalized), hosts (case, port) and ports', () => {
    const e = engine(
      allow('ops', [
        { to: [{ methods: ['GET', 'HEAD'], paths: ['/api/*', '/exact', '*.png'] }] },
        { to: [{ methods: ['POST'], hosts: ['API.example.com', 'admin:9000'], ports: [8080] }] },
      ]),
    );
    assert.equal(http(e, { path: '/api/x' }), 'allowed');
    assert.equal(http(e, { path: '/exact' }), 'allowed');
    assert.equal(http(e, { path: '/exact/more' }), 'denied');
    assert.equal(http(e, { path: '/img/a.png' }), 'allowed');
    assert.equal(http(e, { method: 'DELETE', path: '/api/x' }), 'denied');
    assert.equal(http(e, { path: '/api/../secret' }), 'denied', 'dot segments resolved');
    assert.equal(http(e, { path: '/%61pi/x' }), 'allowed', 'unreserved escapes decoded');
    assert.equal(http(e, { method: 'POST', host: 'api.EXAMPLE.com:8080' }), 'allowed', 'host case-insensitive, port ignored');
    assert.equal(http(e, { method: 'POST', host: 'admin:9000' }), 'allowed', 'a host with a port matches the authority');
    assert.equal(http(e, { method: 'POST', host: 'admin:9001' }), 'denied');
    assert.equal(http(e, { method: 'POST', host: 'api.example.com' }, 9090), 'denied', 'another port');
  });

  it('when: headers, source.*, destination.port, request.auth principal and claims', () => {
    const e = engine(
      allow('when', [
        {
          when: [
            { key: 'request.headers[x-tenant]', values: ['a*'] },
            { key: 'source.namespace', values: ['default'] },
            { key: 'destination.port', notValues: ['9999'] },
            { key: 'request.auth.claims[groups]', values: ['admin'] },
            { key: 'request.auth.claims[realm][role]', notValues: ['guest'] },
          ],
        },
      ]),
    );
    const auth = (claims: Record<string, unknown>): RequestAuth => ({ principal: 'https://iss/user', claims });
    const ok = { peer: peer('web'), headers: ['X-Tenant: acme'], auth: auth({ groups: ['dev', 'admin'], realm: { role: 'owner' } }) };
    assert.equal(http(e, ok), 'allowed');
    assert.equal(http(e, { ...ok, headers: ['x-tenant: zeta'] }), 'denied');
    assert.equal(http(e, { ...ok, headers: [] }), 'denied', 'absent header');
    assert.equal(http(e, { ...ok, auth: auth({ groups: 'dev' }) }), 'denied');
    assert.equal(http(e, { ...ok, auth: auth({ groups: ['admin'], realm: { role: 'guest' } }) }), 'denied');
    assert.equal(http(e, { ...ok, auth: undefined }), 'denied', 'no verified token, no claims');
    assert.equal(http(e, ok, 9999), 'denied');
    const rp = engine(allow('rp', [{ from: [{ requestPrincipals: ['https://iss/*'] }] }]));
    assert.equal(http(rp, { auth: auth({}) }), 'allowed');
    assert.equal(http(rp, {}), 'denied');
  });

  it('AUDIT notes a match and decides nothing', () => {
    const e = engine(deny('d', []), { name: 'default/audit', action: 'AUDIT', rules: [{ to: [{ paths: ['/pay'] }] }] });
    assert.deepEqual(e.checkHttp(request({ path: '/pay' }), 1), { policy: 'default/audit', action: 'AUDIT', result: 'audited' });
    assert.equal(http(e, { path: '/other' }), 'allowed');
  });

  it('dryRun refuses nothing and names what it would refuse', () => {
    const e = engine({ ...deny('try-deny', [{ to: [{ methods: ['DELETE'] }] }]), dryRun: true });
    assert.deepEqual(e.checkHttp(request({ method: 'DELETE' }), 1), { policy: 'default/try-deny', action: 'DENY', result: 'dry-run-denied' });
    assert.equal(http(e, {}), 'allowed');
    const a = engine({ ...allow('try-allow', [{ from: [{ principals: ['cluster.local/ns/default/sa/web'] }] }]), dryRun: true });
    assert.equal(http(a, { peer: peer('web') }), 'allowed');
    assert.deepEqual(a.checkHttp(request({ peer: peer('evil') }), 1), { policy: 'default/try-allow', action: 'ALLOW', result: 'dry-run-denied' });
    // Enforced policies still decide.
    const both = engine(deny('real', [{ to: [{ paths: ['/x'] }] }]), { ...deny('try', [{}]), dryRun: true });
    assert.equal(http(both, { path: '/x' }), 'denied');
  });
});

describe('L4: a connection is a peer and a port', () => {
  const fromBackend = allow('db-from-backend', [{ from: [{ principals: ['cluster.local/ns/default/sa/backend'] }] }]);

  it('allows the peer the policy names and refuses others, and an unknown peer (default deny)', () => {
    const e = engine(fromBackend);
    assert.equal(tcp(e, peer('backend')), 'allowed');
    assert.equal(tcp(e, peer('frontend')), 'denied');
    assert.equal(tcp(e, undefined), 'denied');
  });

  it('ports and namespaces apply; source conditions too', () => {
    const e = engine(
      allow('p', [
        { from: [{ namespaces: ['data'] }], to: [{ ports: [6379] }], when: [{ key: 'source.principal', values: ['cluster.local/ns/data/sa/cache-*'] }] },
      ]),
    );
    assert.equal(tcp(e, peer('cache-1', 'data'), 6379), 'allowed');
    assert.equal(tcp(e, peer('cache-1', 'data'), 5432), 'denied');
    assert.equal(tcp(e, peer('web', 'data'), 6379), 'denied');
  });

  it('an ALLOW rule with HTTP-only fields never matches a connection; a DENY rule with them matches on the rest', () => {
    const httpAllow = engine(fromBackend, allow('get-only', [{ to: [{ methods: ['GET'] }] }]));
    assert.equal(tcp(httpAllow, peer('frontend')), 'denied', 'the GET rule does not let a connection in');
    assert.equal(tcp(httpAllow, peer('backend')), 'allowed');
    const httpDeny = engine(deny('no-post', [{ to: [{ methods: ['POST'], ports: [5432] }] }]));
    assert.equal(tcp(httpDeny, peer('backend'), 5432), 'denied', 'the DENY applies to every connection on its port');
    assert.equal(tcp(httpDeny, peer('backend'), 6379), 'allowed');
    const headerAllow = engine(allow('hdr', [{ when: [{ key: 'request.headers[x]', values: ['y'] }] }]));
    assert.equal(tcp(headerAllow, peer('backend')), 'denied');
  });
});

describe('malformed snapshots are refused, never a crash', () => {
  it('throws on what it cannot compile', () => {
    const bad: unknown[] = [
      { name: 'x', action: 'CUSTOM', rules: [] },
      { name: 'x', action: 'ALLOW', rules: [{ from: [1] }] },
      { name: 'x', action: 'ALLOW', rules: [{ to: [{ paths: ['/a*b'] }] }] },
      { name: 'x', action: 'ALLOW', rules: [{ when: [{ key: 'nope', values: ['a'] }] }] },
      { name: 'x', action: 'ALLOW', rules: [{ to: [{ ports: [70000] }] }] },
      { name: 'x', action: 'ALLOW', rules: [{ from: [{ principals: 'a' }] }] },
      { action: 'ALLOW', rules: [] },
    ];
    for (const p of bad) assert.throws(() => new AuthzEngine({ trustDomain: 'cluster.local', policies: [p as AuthorizationPolicySnapshot] }));
  });
});

describe('path normalization', () => {
  it('resolves dot segments and decodes unreserved escapes only', () => {
    assert.equal(normalizePath('/a/./b/../c'), '/a/c');
    assert.equal(normalizePath('/a/..'), '/');
    assert.equal(normalizePath('/../../x'), '/x');
    assert.equal(normalizePath('/%7Euser/%2F'), '/~user/%2F');
    assert.equal(normalizePath('/plain'), '/plain');
  });
});
