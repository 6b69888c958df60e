// Decoding a chunked response body for an HTTP/2 client (ChunkedDecoder in
// src/proxy/h2/to-http1.ts): the same data and trailers whatever the bytes' split,
// trailer fields HTTP/2 can't carry dropped, and invalid framing refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder } from '../../src/proxy/h2/to-http1.js';

const body = '5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\nContent-Length: 99\r\n:status: 500\r\nx-sum: 12\r\n\r\n';

function decode(chunks: Buffer[]): { data: string; decoder: ChunkedDecoder } {
  const decoder = new ChunkedDecoder();
  let data = '';
  for (const c of chunks)
    decoder.feed(c, 0, (part) => {
      data += part.toString('latin1');
    });
  return { data, decoder };
}

test('decodes data and trailers fed whole, and fed one byte at a time', () => {
  const whole = Buffer.from(body, 'latin1');
  for (const chunks of [[whole], [...whole].map((b) => Buffer.from([b]))]) {
    const { data, decoder } = decode(chunks);
    assert.equal(data, 'hello world');
    assert.equal(decoder.error, null);
    assert.equal(decoder.done, true);
    // Repeated fields combine; framing fields and pseudo-headers are not trailers.
    assert.deepEqual(decoder.trailers(), { 'x-sum': '11, 12' });
  }
});

test('refuses invalid framing', () => {
  for (const bad of ['zz\r\n', '5\r\nhelloXX', '5\nhello', '1234567890abcd\r\n', '0\r\nx\ny\r\n\r\n']) {
    const { decoder } = decode([Buffer.from(bad, 'latin1')]);
    assert.ok(decoder.error, `expected an error for ${JSON.stringify(bad)}`);
  }
});

test('refuses a trailer section larger than a head may be', () => {
  const { decoder } = decode([Buffer.from(`0\r\nx-big: ${'a'.repeat(17 * 1024)}\r\n\r\n`, 'latin1')]);
  assert.equal(decoder.error, 'trailer section too large');
});
