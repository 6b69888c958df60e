import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  findHeadEnd,
  headerValue,
  isFailure,
  parseRequestHead,
  parseResponseHead,
  responseHeadSlot,
  serializeRequestHead,
  type RequestHead,
} from '../../src/http1/http1-parser.js';

function req(text: string): RequestHead | { error: string; reason: string } {
  const buf = Buffer.from(text, 'latin1');
  const end = findHeadEnd(buf, 0, buf.length);
  assert.notEqual(end, -1, 'head end found');
  return parseRequestHead(buf, end);
}

function ok(text: string): RequestHead {
  const r = req(text);
  if ('error' in r) assert.fail(`unexpected failure: ${r.reason}`);
  return r;
}

function refused(text: string, reason: RegExp): void {
  const r = req(text);
  assert.ok(isFailure(r), 'request must be refused');
  assert.match(r.reason, reason);
}

test('a simple GET parses with keep-alive and no rewrite', () => {
  const r = ok('GET /api/products?x=1 HTTP/1.1\r\nHost: backend\r\nAccept: */*\r\n\r\n');
  assert.equal(r.method, 'GET');
  assert.equal(r.target, '/api/products?x=1');
  assert.equal(r.path, '/api/products');
  assert.equal(r.host, 'backend');
  assert.equal(r.contentLength, -1);
  assert.equal(r.chunked, false);
  assert.equal(r.keepAlive, true);
  assert.equal(r.rewrite, false);
  assert.equal(headerValue(r.lines, 'accept'), '*/*');
});

test('Connection: keep-alive alone is forwarded raw; other Connection tokens force a rewrite', () => {
  assert.equal(ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n').rewrite, false);
  const close = ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.equal(close.keepAlive, false);
  assert.equal(close.rewrite, true);
  const custom = ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep: 1\r\n\r\n');
  const out = serializeRequestHead(custom, 'trellis-source: t\r\n');
  assert.doesNotMatch(out, /x-secret/i);
  assert.doesNotMatch(out, /connection/i);
  assert.match(out, /Keep: 1\r\ntrellis-source: t\r\n\r\n$/);
});

test('HTTP/1.0 is close-by-default unless it asks for keep-alive', () => {
  assert.equal(ok('GET / HTTP/1.0\r\n\r\n').keepAlive, false);
  assert.equal(ok('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n').keepAlive, true);
});

test('absolute-form targets give host and origin-form path', () => {
  const r = ok('GET http://backend:8080/api?q=1 HTTP/1.1\r\nHost: backend:8080\r\n\r\n');
  assert.equal(r.host, 'backend:8080');
  assert.equal(r.target, '/api?q=1');
  assert.equal(r.path, '/api');
  assert.equal(r.rewrite, true);
  assert.match(serializeRequestHead(r, ''), /^GET \/api\?q=1 HTTP\/1\.1\r\n/);
});

test('framing headers: Content-Length and chunked', () => {
  assert.equal(ok('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n').contentLength, 12);
  assert.equal(ok('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n').chunked, true);
});

test('smuggling vectors are refused', () => {
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', /both Content-Length and Transfer-Encoding/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n', /duplicate Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n', /invalid Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', /invalid Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n', /invalid header name/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', /unsupported Transfer-Encoding/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', /duplicate Transfer-Encoding/);
  refused('GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n', /folding/);
  refused('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', /duplicate Host/);
  refused('GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n', /invalid character|invalid header name|missing Host/);
});

test('bad request lines are refused', () => {
  refused('GET\r\nHost: a\r\n\r\n', /request line/);
  refused('GET / HTTP/2.0\r\nHost: a\r\n\r\n', /version/);
  refused('GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', /version|request line/);
  refused('G(T / HTTP/1.1\r\nHost: a\r\n\r\n', /request line/);
  refused('GET / HTTP/1.1\r\n\r\n', /missing Host/);
  refused('GET nothing HTTP/1.1\r\nHost: a\r\n\r\n', /request target/);
});

test('response heads: framing and connection reuse', () => {
  const parse = (t: string) => {
    const b = Buffer.from(t, 'latin1');
    const r = parseResponseHead(b, findHeadEnd(b, 0, b.length));
    if (isFailure(r)) assert.fail(r.reason);
    return r;
  };
  const a = parse('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n');
  assert.deepEqual([a.status, a.contentLength, a.chunked, a.close], [200, 3, false, false]);
  const c = parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.equal(c.chunked, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n').close, true);
  assert.equal(parse('HTTP/1.0 200 OK\r\n\r\n').close, true);
  const b = Buffer.from('HTTP/1.1 2x0 OK\r\n\r\n');
  assert.ok(isFailure(parseResponseHead(b, b.length)));
  // No reason phrase, spaces around values, mixed case names and values.
  const bare = parse('HTTP/1.1 204\r\ncOnTeNt-LeNgTh:  0 \r\nCONNECTION: Close\r\n\r\n');
  assert.deepEqual([bare.status, bare.contentLength, bare.close], [204, 0, true]);
  assert.equal(parse('HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n').close, false);
  assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n\r\n').close, true);
  assert.equal(parse('HTTP/1.1 503 Service Unavailable\r\ntrellis-error: app-unavailable\r\ncontent-length: 0\r\n\r\n').appUnavailable, true);
  assert.equal(parse('HTTP/1.1 502 Bad Gateway\r\ntrellis-error: app-unavailable\r\ncontent-length: 0\r\n\r\n').appUnavailable, false);
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 123456789012345\r\n\r\n').contentLength, 123456789012345);
  const refused = (t: string, why: RegExp) => {
    const r = parseResponseHead(Buffer.from(t, 'latin1'), Buffer.byteLength(t, 'latin1'));
    assert.ok(isFailure(r) && why.test(r.reason), `${JSON.stringify(t)} → ${JSON.stringify(r)}`);
  };
  refused('HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n', /Content-Length/);
  refused('HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n', /Content-Length/);
  refused('HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n', /Content-Length/);
  refused('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n', /duplicate Content-Length/);
  // Both framings: RFC 9112 §6.3 says it "ought to be handled as an error"; the request side refuses it too.
  refused('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', /both Content-Length and Transfer-Encoding/);
  refused('HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n', /not a token/);
  refused('HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n', /folding/);
  refused('HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n', /invalid character/);
  refused('HTTP/1.1 200 OK\nX: 1\r\n\r\n', /bare LF/);
  refused('http/1.1 200 OK\r\n\r\n', /status line/);
  refused('HTTP/1.1 600 Odd\r\n\r\n', /status code/);
  refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', /Transfer-Encoding/);
  refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', /duplicate Transfer-Encoding/);
  refused('HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', /HTTP\/1\.0/);
  refused('HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\n', /100 response/);
  refused('HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n', /204/);
  assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n').chunked, true);
  const gzip = parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n');
  assert.deepEqual([gzip.chunked, gzip.contentLength, gzip.close], [false, -1, true], 'no chunked: read until close');
  assert.equal(parse('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n').upgrade, 'websocket');
  refused('HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n', /bare LF/);
  refused('HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\n\r\n', /bare CR/);
  refused('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', /header line/);
  refused('HTTP/2.0 200 OK\r\n\r\n', /status line/);
  refused('HTTP/1.2 200 OK\r\n\r\n', /version/);
  refused('HTTP/1.1 099 Low\r\n\r\n', /status code/);
});

// Found by the fuzzer (http1-parser-fuzz.test.ts), issue 10.
test('a Connection header naming Content-Length, Transfer-Encoding or Host does not strip them from the forwarded head', () => {
  for (const [name, line] of [
    ['content-length', 'Content-Length: 5'],
    ['transfer-encoding', 'Transfer-Encoding: chunked'],
    ['host', 'Host: a'],
  ] as const) {
    const r = ok(`POST / HTTP/1.1\r\nHost: a\r\n${name === 'host' ? '' : `${line}\r\n`}Connection: ${name}\r\n\r\n`);
    const out = serializeRequestHead(r, '');
    assert.ok(out.includes(`${line}\r\n`), `${name} kept: ${JSON.stringify(out)}`);
    assert.doesNotMatch(out, /connection/i);
  }
});

test('every Connection line names hop-by-hop headers, not only the first', () => {
  const r = ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n');
  assert.doesNotMatch(serializeRequestHead(r, ''), /x-secret/i);
});

test('an invalid Host is refused', () => {
  for (const host of ['"', 'a/b', 'a b', 'echo:x', 'a@b', '[::1']) refused(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, /invalid Host/);
  for (const host of ['', 'echo', 'echo:8080', '127.0.0.1:1', '[::1]:80', 'xn--bcher-kva.example']) ok(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
});

function res(text: string): ReturnType<typeof parseResponseHead> {
  const buf = Buffer.from(text, 'latin1');
  return parseResponseHead(buf, findHeadEnd(buf, 0, buf.length));
}

test('response heads: names that are not tokens, control bytes in values or the reason phrase are refused', () => {
  for (const bad of [
    'HTTP/1.1 200 OK\r\n,: x\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-A: 1\x002\r\n\r\n',
    'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 200 O\x00K\r\n\r\n',
  ])
    assert.ok(isFailure(res(bad)), `refused: ${JSON.stringify(bad)}`);
  assert.ok(!isFailure(res('HTTP/1.1 200 OK\tfine \x80\r\nX-A: 1\t2 \xff\r\n\r\n')));
});

test('response heads: more than one Transfer-Encoding line is refused (as on the request side), and so is chunked before another coding', () => {
  for (const second of ['', 'gzip', 'chunked'])
    assert.ok(isFailure(res(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ${second}\r\n\r\n`)), second);
  assert.ok(isFailure(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n')));
  const g = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n');
  assert.ok(!isFailure(g) && g.chunked);
});

test('response heads: Connection: close wins over a later keep-alive', () => {
  const r = res('HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n');
  assert.ok(!isFailure(r) && r.close);
  const k = res('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n');
  assert.ok(!isFailure(k) && !k.close);
});

test('upgrade offers: h2c is dropped (HTTP2-Settings too), HTTP/1.0 and a missing Connection token make none, a bad value is refused', () => {
  const ws = ok('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n');
  assert.deepEqual([ws.upgrade, ws.upgradeTo], [true, 'WebSocket']);
  assert.match(serializeRequestHead(ws, '', ws.upgradeTo), /upgrade: WebSocket\r\nconnection: upgrade\r\n\r\n$/);
  assert.doesNotMatch(serializeRequestHead(ws, ''), /upgrade/i, 'not permitted: forwarded as a plain request');
  const h2c = ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
  assert.deepEqual([h2c.upgrade, h2c.upgradeTo], [false, '']);
  assert.doesNotMatch(serializeRequestHead(h2c, ''), /upgrade|http2-settings/i);
  const mixed = ok('GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: x\r\n\r\n');
  assert.equal(mixed.upgradeTo, 'websocket');
  assert.doesNotMatch(serializeRequestHead(mixed, '', mixed.upgradeTo), /h2c|http2-settings/i);
  assert.equal(ok('GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n').upgrade, false);
  assert.equal(ok('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n').upgrade, false);
  refused('GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: web socket\r\n\r\n', /Upgrade/);
});

test('CONNECT is refused in every target form', () => {
  refused('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n', /CONNECT/);
  refused('CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n', /CONNECT/);
});

test('an absolute-form target and a Host header must name the same host', () => {
  refused('GET http://other/ HTTP/1.1\r\nHost: backend\r\n\r\n', /another host/);
  refused('GET http://user@backend/ HTTP/1.1\r\nHost: backend\r\n\r\n', /userinfo/);
  refused('GET http:///x HTTP/1.1\r\nHost: backend\r\n\r\n', /empty host/);
  assert.equal(ok('GET http://Backend:80/ HTTP/1.1\r\nHost: backend\r\n\r\n').host, 'Backend:80');
  assert.equal(ok('GET https://backend/ HTTP/1.1\r\nHost: backend:443\r\n\r\n').host, 'backend');
  const old = ok('GET http://backend/x HTTP/1.0\r\n\r\n');
  assert.match(serializeRequestHead(old, ''), /^GET \/x HTTP\/1\.0\r\nHost: backend\r\n\r\n$/);
});

// Found by the parser fuzzer once absolute-form targets were checked (issue 10).
test('an absolute-form target with an empty path and a query becomes /?query, not ?query', () => {
  const r = ok('GET http://echo?q=1 HTTP/1.1\r\nHost: echo\r\n\r\n');
  assert.equal(r.target, '/?q=1');
  assert.equal(r.path, '/');
  assert.match(serializeRequestHead(r, ''), /^GET \/\?q=1 HTTP\/1\.1\r\n/);
});

test('header names and Connection values are matched in any case, each line kept as sent, in order', () => {
  const r = ok('GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nConnection: Keep-Alive\r\nAccept: */*\r\n\r\n');
  assert.deepEqual(r.lines, ['Host: a', 'User-Agent: x', 'Connection: Keep-Alive', 'Accept: */*']);
  assert.equal(r.keepAlive, true);
  assert.equal(r.rewrite, false, 'a lone keep-alive and an ordinary header of a hop-by-hop name’s length need no rewrite');
  assert.equal(ok('GET / HTTP/1.1\r\nHost: a\r\nConnection:  CLOSE \r\n\r\n').keepAlive, false);
  assert.equal(ok('GET / HTTP/1.0\r\nconnection: KEEP-ALIVE\r\n\r\n').keepAlive, true);
  for (const hop of ['Keep-Alive: timeout=5', 'TE: trailers', 'Trailer: x', 'Proxy-Connection: close', 'PROXY-AUTHORIZATION: Basic eA==']) {
    const h = ok(`GET / HTTP/1.1\r\nHost: a\r\n${hop}\r\n\r\n`);
    assert.equal(h.rewrite, true, hop);
    assert.ok(!serializeRequestHead(h, '').includes(hop), `${hop} is not forwarded`);
  }
  // Methods are case-sensitive: a common one is recognised only as spelled, any other token kept as sent.
  assert.equal(ok('PUT / HTTP/1.1\r\nHost: a\r\n\r\n').method, 'PUT');
  assert.equal(ok('get / HTTP/1.1\r\nHost: a\r\n\r\n').method, 'get');
  assert.equal(ok('PURGE / HTTP/1.1\r\nHost: a\r\n\r\n').method, 'PURGE');
  // An absolute-form target without a Host (HTTP/1.0) adds one after the lines sent.
  assert.deepEqual(ok('GET http://b:8080/x HTTP/1.0\r\nAccept: */*\r\n\r\n').lines, ['Accept: */*', 'Host: b:8080']);
  assert.deepEqual(ok('GET / HTTP/1.0\r\n\r\n').lines, []);
});

test('a response head parsed into a connection’s slot overwrites every field of the previous one', () => {
  const slot = responseHeadSlot();
  const parse = (text: string) => {
    const buf = Buffer.from(text, 'latin1');
    return parseResponseHead(buf, findHeadEnd(buf, 0, buf.length), slot);
  };
  const first = parse('HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n');
  assert.equal(first, slot);
  assert.deepEqual(
    { ...slot },
    { status: 101, minor: 0, contentLength: -1, chunked: false, close: true, appUnavailable: false, upgrade: 'websocket', headBytes: 75 },
  );
  parse('HTTP/1.1 503 Service Unavailable\r\ntrellis-error: app-unavailable\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.deepEqual({ ...slot }, { status: 503, minor: 1, contentLength: -1, chunked: true, close: false, appUnavailable: true, upgrade: '', headBytes: 96 });
  const separate = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'), 38);
  assert.notEqual(separate, slot);
  assert.deepEqual(separate, { status: 200, minor: 1, contentLength: 2, chunked: false, close: false, appUnavailable: false, upgrade: '', headBytes: 38 });
  assert.equal(slot.status, 503, 'a parse without a slot leaves it alone');
});
