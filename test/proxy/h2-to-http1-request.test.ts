// What an HTTP/2 client sends becomes an HTTP/1.1 request line and head for an app
// that speaks only HTTP/1.1: every pseudo-header and header is checked before it is
// written, so no client can split the request (a space, CR or LF in :path or
// :authority, a method that is no token) or smuggle framing the app reads differently.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { http1Request } from '../../src/proxy/h2/to-http1.js';
import { requestHeadOf } from '../../src/proxy/h2/server-stream.js';

const head = (h: Record<string, string>) => requestHeadOf({ ':method': 'GET', ':path': '/', ':authority': 'app', ...h });

test('an ordinary request becomes one request line, a host line and its headers', () => {
  const r = http1Request(head({ ':path': '/a?b=1', 'x-one': '1' }), true, '127.0.0.1:1');
  assert.notEqual(typeof r, 'string');
  assert.equal((r as { head: Buffer }).head.toString('latin1'), 'GET /a?b=1 HTTP/1.1\r\nhost: app\r\nx-one: 1\r\n\r\n');
});

test('pseudo-headers that would split or bend the HTTP/1.1 request are refused', () => {
  const refused: [Record<string, string>, RegExp][] = [
    [{ ':path': '/a HTTP/1.1\r\nx: y' }, /:path/],
    [{ ':path': '/a b' }, /:path/],
    [{ ':path': 'http://other/' }, /:path/],
    [{ ':method': 'GET /x' }, /:method/],
    [{ ':method': 'CONNECT' }, /CONNECT/],
    [{ ':authority': 'app\r\nx-injected: 1' }, /:authority/],
    [{ ':authority': 'a b' }, /:authority/],
    [{ 'x-bad': 'a\nb' }, /invalid header/],
  ];
  for (const [h, why] of refused) {
    const r = http1Request(head(h), true, '127.0.0.1:1');
    assert.equal(typeof r, 'string', JSON.stringify(h));
    assert.match(r as string, why, JSON.stringify(h));
  }
});

test('framing and hop-by-hop headers from the client are not forwarded; a body of unknown length goes chunked', () => {
  const r = http1Request(head({ ':method': 'POST', 'transfer-encoding': 'gzip', connection: 'close', host: 'other', upgrade: 'x' }), false, '127.0.0.1:1');
  assert.notEqual(typeof r, 'string');
  const text = (r as { head: Buffer }).head.toString('latin1');
  assert.equal(text, 'POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n');
});
