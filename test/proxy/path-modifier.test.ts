// ReplacePrefixMatch and redirect Locations against the Gateway API's own examples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modifyPath } from '../../src/proxy/filters/path-modifier.js';
import { redirectLocation } from '../../src/proxy/filters/request-redirect.js';

test('ReplacePrefixMatch follows the Gateway API table (matched prefix, request path, replacement → path)', () => {
  const table: [string, string, string, string][] = [
    ['/foo', '/foo/bar', '/xyz', '/xyz/bar'],
    ['/foo', '/foo/bar', '/xyz/', '/xyz/bar'],
    ['/foo/', '/foo/bar', '/xyz', '/xyz/bar'],
    ['/foo/', '/foo/bar', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo', '/foo/', '/xyz', '/xyz/'],
    ['/foo/', '/foo/', '/xyz', '/xyz/'],
    ['/foo', '/foo', '/', '/'],
    ['/foo', '/foo/', '/', '/'],
    ['/foo', '/foo/bar', '/', '/bar'],
    ['/', '/a/b', '/x', '/x/a/b'],
  ];
  for (const [prefix, path, value, want] of table) {
    assert.equal(modifyPath(path, { type: 'ReplacePrefixMatch', value }, prefix), want, `${prefix} ${path} ${value}`);
  }
  assert.equal(modifyPath('/any/thing', { type: 'ReplaceFullPath', value: '/fixed' }, '/any'), '/fixed');
});

test('redirect Location: scheme, host, port rules and the query string', () => {
  const spec = (s: object) => ({ type: 'RequestRedirect' as const, statusCode: 302 as const, ...s });
  assert.equal(redirectLocation(spec({}), 'api:8080', '/a?x=1', '/a', '/'), 'http://api:8080/a?x=1');
  assert.equal(redirectLocation(spec({ scheme: 'https' }), 'api:8080', '/a', '/a', '/'), 'https://api/a', 'a new scheme takes its well-known port');
  assert.equal(redirectLocation(spec({ scheme: 'http' }), 'api:8080', '/a', '/a', '/'), 'http://api/a');
  assert.equal(redirectLocation(spec({ scheme: 'https', port: 8443 }), 'api', '/a', '/a', '/'), 'https://api:8443/a');
  assert.equal(redirectLocation(spec({ port: 80 }), 'api:9', '/a', '/a', '/'), 'http://api/a', 'port 80 on http is left out');
  assert.equal(redirectLocation(spec({ hostname: 'new.example' }), '[::1]:81', '/a', '/a', '/'), 'http://new.example:81/a');
  assert.equal(redirectLocation(spec({ path: { type: 'ReplacePrefixMatch', value: '/v2' } }), 'api', '/v1/x?q', '/v1/x', '/v1'), 'http://api/v2/x?q');
});
