import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import { findHeadEnd, isFailure, parseRequestHead } from '../../src/http1/http1-parser.js';
import { compileUpstream, matchRoute, pickBackend } from '../../src/proxy/routing/router.js';

function request(method: string, path: string, headers: Record<string, string> = {}) {
  const text = `${method} ${path} HTTP/1.1\r\nHost: backend\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
  const buf = Buffer.from(text);
  const r = parseRequestHead(buf, findHeadEnd(buf, 0, buf.length));
  if (isFailure(r)) throw new Error(r.reason);
  return r;
}

function upstream(routes: RouteEntry[]): UpstreamSnapshot {
  return { service: 'backend', protocol: 'http', routes, backends: { backend: { name: 'backend', endpoints: [] } } };
}

const entry = (name: string, match: RouteEntry['match'], backend = name): RouteEntry => ({ name, match, backends: [{ backend, weight: 1 }] });

test('no routes: everything goes to the whole service', () => {
  const up = compileUpstream(upstream([]));
  const r = matchRoute(up, request('GET', '/anything'));
  assert.deepEqual(r?.backends, ['backend']);
});

test('Exact and PathPrefix match as the Gateway API says', () => {
  const up = compileUpstream(
    upstream([entry('exact', { path: { type: 'Exact', value: '/api' } }), entry('prefix', { path: { type: 'PathPrefix', value: '/api' } })]),
  );
  assert.equal(matchRoute(up, request('GET', '/api'))?.name, 'exact');
  assert.equal(matchRoute(up, request('GET', '/api/x?y=1'))?.name, 'prefix');
  assert.equal(matchRoute(up, request('GET', '/api/'))?.name, 'prefix');
  assert.equal(matchRoute(up, request('GET', '/apix')), undefined, 'prefixes match whole path elements');
  const trailing = compileUpstream(upstream([entry('slash', { path: { type: 'PathPrefix', value: '/api/' } })]));
  assert.equal(matchRoute(trailing, request('GET', '/api'))?.name, 'slash');
});

test('method and header matches (Exact and RegularExpression) must all hold', () => {
  const up = compileUpstream(
    upstream([
      entry('v2', { headers: [{ name: 'X-User', type: 'RegularExpression', value: '.*@mycorp.com' }] }),
      entry('post', { method: 'POST', headers: [{ name: 'x-env', type: 'Exact', value: 'test' }] }),
      entry('rest', { path: { type: 'PathPrefix', value: '/' } }),
    ]),
  );
  assert.equal(matchRoute(up, request('GET', '/', { 'x-user': 'ann@mycorp.com' }))?.name, 'v2');
  assert.equal(matchRoute(up, request('GET', '/', { 'x-user': 'ann@othercorp.com' }))?.name, 'rest');
  assert.equal(matchRoute(up, request('GET', '/', { 'x-user': 'ann@mycorp.com.evil' }))?.name, 'rest', 'regex is anchored');
  assert.equal(matchRoute(up, request('POST', '/', { 'x-env': 'test' }))?.name, 'post');
  assert.equal(matchRoute(up, request('POST', '/', { 'x-env': 'Test' }))?.name, 'rest', 'header values are case-sensitive');
  assert.equal(matchRoute(up, request('GET', '/', { 'x-env': 'test' }))?.name, 'rest');
});

test('an invalid regex makes the snapshot unusable (the proxy NACKs it)', () => {
  assert.throws(() => compileUpstream(upstream([entry('bad', { headers: [{ name: 'x', type: 'RegularExpression', value: '(' }] })])));
});

test('weighted pick follows the weights', () => {
  const up = compileUpstream(
    upstream([
      {
        name: 'split',
        match: {},
        backends: [
          { backend: 'v1', weight: 90 },
          { backend: 'v2', weight: 10 },
          { backend: 'v3', weight: 0 },
        ],
      },
    ]),
  );
  const r = matchRoute(up, request('GET', '/'))!;
  assert.equal(
    pickBackend(r, () => 0),
    'v1',
  );
  assert.equal(
    pickBackend(r, () => 0.8999),
    'v1',
  );
  assert.equal(
    pickBackend(r, () => 0.9),
    'v2',
  );
  assert.equal(
    pickBackend(r, () => 0.99999),
    'v2',
  );
  const counts: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) {
    const b = pickBackend(r)!;
    counts[b] = (counts[b] ?? 0) + 1;
  }
  assert.equal(counts.v3, undefined, 'weight 0 gets nothing');
  assert.ok(counts.v2! > 800 && counts.v2! < 1200, `v2 got ${counts.v2}`);
  const zero = compileUpstream(upstream([{ name: 'z', match: {}, backends: [{ backend: 'v1', weight: 0 }] }]));
  assert.equal(pickBackend(matchRoute(zero, request('GET', '/'))!), undefined);
});

test('a RegularExpression path matches the whole path, without the query string', () => {
  const up = compileUpstream(
    upstream([entry('item', { path: { type: 'RegularExpression', value: '/items/[0-9]+' } }), entry('rest', { path: { type: 'PathPrefix', value: '/' } })]),
  );
  assert.equal(matchRoute(up, request('GET', '/items/42'))?.name, 'item');
  assert.equal(matchRoute(up, request('GET', '/items/42?x=/items/a'))?.name, 'item');
  assert.equal(matchRoute(up, request('GET', '/items/42/more'))?.name, 'rest', 'anchored at the end');
  assert.equal(matchRoute(up, request('GET', '/v1/items/42'))?.name, 'rest', 'anchored at the start');
});

test('query param matches: Exact and RegularExpression, names case-sensitive, the first occurrence counts', () => {
  const up = compileUpstream(
    upstream([
      entry('both', {
        queryParams: [
          { name: 'page', type: 'Exact', value: '2' },
          { name: 'sort', type: 'RegularExpression', value: 'asc|desc' },
        ],
      }),
      entry('page', { queryParams: [{ name: 'page', type: 'Exact', value: '2' }] }),
      entry('rest', { path: { type: 'PathPrefix', value: '/' } }),
    ]),
  );
  assert.equal(matchRoute(up, request('GET', '/list?page=2&sort=desc'))?.name, 'both');
  assert.equal(matchRoute(up, request('GET', '/list?sort=asc&page=2'))?.name, 'both', 'order in the query does not matter');
  assert.equal(matchRoute(up, request('GET', '/list?page=2&sort=up'))?.name, 'page');
  assert.equal(matchRoute(up, request('GET', '/list?page=22'))?.name, 'rest', 'Exact compares the whole value');
  assert.equal(matchRoute(up, request('GET', '/list?xpage=2'))?.name, 'rest', 'whole names only');
  assert.equal(matchRoute(up, request('GET', '/list?Page=2'))?.name, 'rest', 'names are case-sensitive');
  assert.equal(matchRoute(up, request('GET', '/list?page=1&page=2'))?.name, 'rest', 'the first occurrence counts');
  assert.equal(matchRoute(up, request('GET', '/list'))?.name, 'rest');
});

test('hostnames: exact names ignore case, port and a trailing dot; wildcards match one or more labels, not the bare domain', () => {
  const up = compileUpstream(
    upstream([{ ...entry('exact', {}), hostname: 'shop.example.com' }, { ...entry('wild', {}), hostname: '*.example.com' }, entry('any', {})]),
  );
  const at = (host: string) => {
    const text = `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const buf = Buffer.from(text);
    const r = parseRequestHead(buf, findHeadEnd(buf, 0, buf.length));
    if (isFailure(r)) throw new Error(r.reason);
    return matchRoute(up, r)?.name;
  };
  assert.equal(at('shop.example.com'), 'exact');
  assert.equal(at('Shop.Example.COM:8080'), 'exact');
  assert.equal(at('shop.example.com.'), 'exact');
  assert.equal(at('cart.example.com'), 'wild');
  assert.equal(at('a.b.example.com'), 'wild');
  assert.equal(at('example.com'), 'any');
  assert.equal(at('xexample.com'), 'any');
  assert.equal(at('backend'), 'any');
});

test('GRPCRoute entries match gRPC POSTs to /<service>/<method> only', async () => {
  const { compileRoutes } = await import('../../src/control/compile/routes.js');
  const entries = compileRoutes('backend', [
    {
      file: 'r.yaml',
      resource: {
        kind: 'GRPCRoute',
        metadata: { name: 'g' },
        spec: {
          parentRefs: [{ name: 'backend' }],
          rules: [
            { matches: [{ method: { service: 'shop.Cart', method: 'Get' } }], backendRefs: [{ name: 'get' }] },
            { matches: [{ method: { type: 'RegularExpression', service: 'shop\\..*', method: 'List.*' } }], backendRefs: [{ name: 'list' }] },
          ],
        },
      },
    },
  ]);
  const up = compileUpstream(upstream([...entries, entry('http', {})]));
  const grpc = { 'content-type': 'application/grpc' };
  assert.equal(matchRoute(up, request('POST', '/shop.Cart/Get', grpc))?.name, 'default/g/rule/0');
  assert.equal(matchRoute(up, request('POST', '/shop.Cart/Get', { 'content-type': 'application/grpc+proto' }))?.name, 'default/g/rule/0');
  assert.equal(matchRoute(up, request('POST', '/shop.Orders/ListAll', grpc))?.name, 'default/g/rule/1');
  assert.equal(matchRoute(up, request('POST', '/shop.Cart/Get', { 'content-type': 'application/json' }))?.name, 'http', 'not gRPC');
  assert.equal(matchRoute(up, request('GET', '/shop.Cart/Get', grpc))?.name, 'http', 'gRPC calls are POSTs');
  assert.equal(matchRoute(up, request('POST', '/shop.Cart/Put', grpc))?.name, 'http');
});

test('the seed example: x-user matching .*@mycorp.com goes to v2, everyone else to v1', () => {
  const up = compileUpstream(
    upstream([
      {
        name: 'mycorp',
        match: { headers: [{ name: 'x-user', type: 'RegularExpression', value: '.*@mycorp.com' }] },
        backends: [{ backend: 'backend-v2', weight: 1 }],
      },
      { name: 'rest', match: { path: { type: 'PathPrefix', value: '/' } }, backends: [{ backend: 'backend-v1', weight: 1 }] },
    ]),
  );
  assert.deepEqual(matchRoute(up, request('GET', '/api', { 'x-user': 'ann@mycorp.com' }))?.backends, ['backend-v2']);
  assert.deepEqual(matchRoute(up, request('GET', '/api', { 'x-user': 'bob@example.com' }))?.backends, ['backend-v1']);
  assert.deepEqual(matchRoute(up, request('GET', '/api'))?.backends, ['backend-v1']);
});

test('an invalid path or query regex also makes the snapshot unusable (NACK, the last good one stays)', () => {
  assert.throws(() => compileUpstream(upstream([entry('bad', { path: { type: 'RegularExpression', value: '/a(' } })])));
  assert.throws(() => compileUpstream(upstream([entry('bad', { queryParams: [{ name: 'q', type: 'RegularExpression', value: '[' }] })])));
});
