// Response framing from an upstream is held to RFC 9112 §6 as strictly as a request's:
// a response two parsers could frame differently (both Content-Length and
// Transfer-Encoding, whitespace before a colon, duplicate lengths, folded or
// control-character lines, a bad chunk) is never forwarded; the client gets 502
// upstream-protocol instead. The upstream is a raw server answering crafted bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { rawExchange, startOutbound } from '../helpers/proxy-pair.js';

/** What the raw upstream answers, by request path; it closes after answering. */
const ANSWERS: Record<string, string> = {
  '/cl-and-te': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  '/space-before-colon': 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello',
  '/cl-twice-differing': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  '/cl-twice-same': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
  '/te-twice': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  '/te-chunked-not-last': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n',
  '/te-in-http10': 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  '/bad-chunk-size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  '/chunk-size-junk': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n',
  '/obs-fold': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded: 2\r\nContent-Length: 2\r\n\r\nok',
  '/nul-in-value': 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok',
  '/ctl-in-value': 'HTTP/1.1 200 OK\r\nX-A: a\x0bb\r\nContent-Length: 2\r\n\r\nok',
  '/bad-name': 'HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok',
  '/lf-in-reason': 'HTTP/1.1 200 OK\nX-Hidden: 1\r\nContent-Length: 2\r\n\r\nok',
  '/lower-case-version': 'http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/status-999': 'HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok',
  '/1xx-with-length': 'HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/204-with-te': 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n',
  '/204-with-length': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
  // Well-formed ones, which must still pass.
  '/ok-204-length-0': 'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n',
  '/ok-gzip-chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n',
  '/ok-until-close': 'HTTP/1.1 200 OK\r\nX-Obs-Text: caf\xe9\r\n\r\nuntil close',
  '/ok-100-then-200': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
};

let raw: net.Server;
let outbound: Sidecar;
let port: number;

before(async () => {
  raw = net.createServer((sock) => {
    let buf = '';
    sock.on('error', () => sock.destroy());
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const path = /^\S+ (\S+)/.exec(buf)?.[1] ?? '';
      sock.end(Buffer.from(ANSWERS[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', 'latin1'));
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  outbound = await startOutbound('web', {
    raw: {
      service: 'raw',
      protocol: 'http',
      routes: [],
      backends: { raw: { name: 'raw', endpoints: [{ id: 'raw-0', host: '127.0.0.1', port: (raw.address() as net.AddressInfo).port, version: 'v1' }] } },
    },
  });
  port = outbound.addresses.upstreams.raw!.port;
});

after(async () => {
  await outbound.close();
  await new Promise<void>((r) => raw.close(() => r()));
});

const get = (path: string, version = '1.1'): Promise<string> =>
  rawExchange(port, `GET ${path} HTTP/${version}\r\nHost: raw\r\nConnection: close\r\n\r\n`, 2000);

for (const path of Object.keys(ANSWERS).filter((p) => !p.startsWith('/ok-'))) {
  test(`a response with ${path.slice(1).replace(/-/g, ' ')} is refused with 502, never forwarded`, async () => {
    const out = await get(path);
    assert.match(out, /^HTTP\/1\.1 502 /, JSON.stringify(out));
    assert.match(out, /trellis-error: upstream-protocol/);
    assert.equal((out.match(/HTTP\/1\.1 /gi) ?? []).length, 1, "only the proxy's own answer");
  });
}

test('well-formed responses still pass: 204 with Content-Length 0, gzip then chunked with trailers, read until close, 100 then 200', async () => {
  assert.match(await get('/ok-204-length-0'), /^HTTP\/1\.1 204 /);
  const chunked = await get('/ok-gzip-chunked');
  assert.match(chunked, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\n2;ext=1\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n$/);
  assert.match(await get('/ok-until-close'), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nuntil close$/);
  const continued = await get('/ok-100-then-200');
  assert.match(continued, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
});

test('a 1xx is not passed to an HTTP/1.0 client (RFC 9110 §15.2)', async () => {
  const out = await get('/ok-100-then-200', '1.0');
  assert.match(out, /^HTTP\/1\.1 200 /, JSON.stringify(out));
  assert.doesNotMatch(out, /100 Continue/);
});
