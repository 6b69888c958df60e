// The suite's checker (harness.ts expectAnswer) holds answers to upstream's rules and
// catches what differs: a case passing means the mesh answered as upstream expects, not
// that the checker looked away. Answers here are made up; the suite's come from the mesh.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RequestCheck } from './case-types.js';
import { type Answer, expectAnswer, routeKeys } from './harness.js';

const echo = (pod: string, headers: Record<string, string[]> = {}, path = '/') => ({ pod, namespace: 'default', path, host: 'echo', headers });
const check = (expect: RequestCheck['expect'], path = '/'): RequestCheck => ({ kind: 'request', name: 't', host: 'echo', path, expect });
const answer = (a: Partial<Answer>): Answer => ({ status: 200, headers: {}, ...a });

test('the backend is the answering pod name prefix, and the status defaults to 200', () => {
  expectAnswer(check({ backend: 'echo-v1' }), answer({ echo: echo('echo-v1-0') }));
  assert.throws(() => expectAnswer(check({ backend: 'echo-v1' }), answer({ echo: echo('echo-v2-0') })), /starts with echo-v1/);
  assert.throws(() => expectAnswer(check({}), answer({ status: 503 })), /status/);
  assert.throws(() => expectAnswer(check({ backend: 'echo-v1' }), answer({})), /an echo answered/);
});

test('request headers compare as their values joined with ",", names in any case', () => {
  const got = answer({ echo: echo('echo-v1-0', { 'x-header-add': ['a', 'b'] }) });
  expectAnswer(check({ requestHeaders: { 'X-Header-Add': 'a,b' } }), got);
  assert.throws(() => expectAnswer(check({ requestHeaders: { 'X-Header-Add': 'a' } }), got), /X-Header-Add/);
  // One value holding both, as a proxy merging repeated fields sends it, is not upstream's "a,b".
  assert.throws(() => expectAnswer(check({ requestHeaders: { 'X-Header-Add': 'a,b' } }), answer({ echo: echo('echo-v1-0', { 'x-header-add': ['a, b'] }) })));
  assert.throws(() => expectAnswer(check({ absentRequestHeaders: ['X-Header-Add'] }), got), /absent/);
});

test('response headers, present and absent', () => {
  expectAnswer(check({ responseHeaders: { 'X-Header-Set': 'set' } }), answer({ headers: { 'x-header-set': 'set' } }));
  assert.throws(() => expectAnswer(check({ absentResponseHeaders: ['X-Header-Set'] }), answer({ headers: { 'x-header-set': 'set' } })), /absent/);
});

test("a redirect's Location: unset parts default to the request's, the port to none or the scheme's", () => {
  const redirect = (location: string, status = 302) => answer({ status, headers: { location } });
  expectAnswer(check({ status: 302, redirect: { host: 'example.org' } }, '/x?q=1'), redirect('http://example.org/x?q=1'));
  expectAnswer(check({ status: 302, redirect: { scheme: 'https' } }, '/scheme'), redirect('https://echo:443/scheme'));
  expectAnswer(check({ status: 302, redirect: { port: '8083' } }, '/port'), redirect('http://echo:8083/port'));
  assert.throws(() => expectAnswer(check({ status: 302, redirect: {} }, '/p'), redirect('http://echo:8080/p')), /redirect port/);
  assert.throws(() => expectAnswer(check({ status: 302, redirect: { path: '/new' } }, '/old'), redirect('http://echo/old')), /redirect path/);
  assert.throws(() => expectAnswer(check({ status: 302, redirect: {} }, '/p'), redirect('http://other/p')), /redirect host/);
  assert.throws(() => expectAnswer(check({ status: 301, redirect: {} }, '/p'), redirect('http://echo/p', 302)), /status/);
});

test('route keys of a case are <namespace>/<name> of each document', () => {
  assert.deepEqual(routeKeys(''), []);
  assert.deepEqual(routeKeys('kind: HTTPRoute\nmetadata: { name: b }\n---\nkind: HTTPRoute\nmetadata: { name: a, namespace: ns }\n'), ['default/b', 'ns/a']);
});
