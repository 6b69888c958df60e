import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteEntry, UpstreamSnapshot } from '../../src/control/protocol.js';
import { findHeadEnd, isFailure, parseRequestHead } from '../../src/proxy/http1-parser.js';
import { compileUpstream, matchRoute, pickBackend } from '../../src/proxy/router.js';

function request(method: string, path: string, headers: Record<string, string> = {}) {
  const text = `${method} ${path} HTTP/1.1\r\nHost: backend\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
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
  const up = compileUpstream(upstream([
    entry('exact', { path: { type: 'Exact', value: '/api' } }),
    entry('prefix', { path: { type: 'PathPrefix', value: '/api' } }),
  ]));
  assert.equal(matchRoute(up, request('GET', '/api'))?.name, 'exact');
  assert.equal(matchRoute(up, request('GET', '/api/x?y=1'))?.name, 'prefix');
  assert.equal(matchRoute(up, request('GET', '/api/'))?.name, 'prefix');
  assert.equal(matchRoute(up, request('GET', '/apix')), undefined, 'prefixes match whole path elements');
  const trailing = compileUpstream(upstream([entry('slash', { path: { type: 'PathPrefix', value: '/api/' } })]));
  assert.equal(matchRoute(trailing, request('GET', '/api'))?.name, 'slash');
});

test('method and header matches (Exact and RegularExpression) must all hold', () => {
  const up = compileUpstream(upstream([
    entry('v2', { headers: [{ name: 'X-User', type: 'RegularExpression', value: '.*@mycorp.com' }] }),
    entry('post', { method: 'POST', headers: [{ name: 'x-env', type: 'Exact', value: 'test' }] }),
    entry('rest', { path: { type: 'PathPrefix', value: '/' } }),
  ]));
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
  const up = compileUpstream(upstream([{ name: 'split', match: {}, backends: [{ backend: 'v1', weight: 90 }, { backend: 'v2', weight: 10 }, { backend: 'v3', weight: 0 }] }]));
  const r = matchRoute(up, request('GET', '/'))!;
  assert.equal(pickBackend(r, () => 0), 'v1');
  assert.equal(pickBackend(r, () => 0.8999), 'v1');
  assert.equal(pickBackend(r, () => 0.9), 'v2');
  assert.equal(pickBackend(r, () => 0.99999), 'v2');
  const counts: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) { const b = pickBackend(r)!; counts[b] = (counts[b] ?? 0) + 1; }
  assert.equal(counts.v3, undefined, 'weight 0 gets nothing');
  assert.ok(counts.v2! > 800 && counts.v2! < 1200, `v2 got ${counts.v2}`);
  const zero = compileUpstream(upstream([{ name: 'z', match: {}, backends: [{ backend: 'v1', weight: 0 }] }]));
  assert.equal(pickBackend(matchRoute(zero, request('GET', '/'))!), undefined);
});
