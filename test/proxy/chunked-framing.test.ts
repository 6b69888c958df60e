import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedFramer } from '../../src/http1/chunked.js';

const body = '5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n';

test('finds the end of a chunked body fed whole', () => {
  const f = new ChunkedFramer();
  const buf = Buffer.from(`${body}NEXT`);
  assert.equal(f.feed(buf, 0, buf.length), body.length);
  assert.equal(f.done, true);
});

test('finds the same end when fed one byte at a time', () => {
  const f = new ChunkedFramer();
  const buf = Buffer.from(body);
  let end = -1;
  for (let i = 0; i < buf.length && end === -1; i++) {
    const r = f.feed(buf, i, i + 1);
    if (r !== -1) end = r;
  }
  assert.equal(end, buf.length);
  assert.equal(f.error, null);
});

test('refuses invalid framing', () => {
  for (const bad of ['zz\r\n', '5\r\nhelloXX', '5\nhello', '1234567890abcd\r\n']) {
    const f = new ChunkedFramer();
    const b = Buffer.from(bad);
    assert.equal(f.feed(b, 0, b.length), -1);
    assert.ok(f.error, `expected an error for ${JSON.stringify(bad)}`);
  }
});

// Found by the fuzzer (chunked-framing-fuzz.test.ts), issue 10: bytes that other parsers
// could frame differently were accepted.
test('refuses anything but whitespace then ";" after a chunk size, control bytes in extensions, and trailer lines that are not fields', () => {
  for (const bad of [
    '1 0\r\nx\r\n0\r\n\r\n',
    '5 x\r\nhello\r\n0\r\n\r\n',
    '0\t0\r\n\r\n',
    '5;a=\x01\r\nhello\r\n0\r\n\r\n',
    '0;\x7f\r\n\r\n',
    '0\r\n \r\n\r\n',
    '0\r\n\tX: 1\r\n\r\n',
    '0\r\nno colon\r\n\r\n',
    '0\r\n: v\r\n\r\n',
    '0\r\nX: a\x00b\r\n\r\n',
    '0\r\n"\r\n\r\n',
  ]) {
    const f = new ChunkedFramer();
    const b = Buffer.from(bad, 'latin1');
    assert.equal(f.feed(b, 0, b.length), -1, JSON.stringify(bad));
    assert.ok(f.error, `expected an error for ${JSON.stringify(bad)}`);
  }
  for (const good of ['5 \r\nhello\r\n0\r\n\r\n', '5\t ;a=b\r\nhello\r\n0 ;x="y z"\r\n\r\n', '0\r\nX: a\tb \x80\r\nY:\r\n\r\n']) {
    const f = new ChunkedFramer();
    const b = Buffer.from(good, 'latin1');
    assert.equal(f.feed(b, 0, b.length), b.length, JSON.stringify(good));
  }
});

test('whitespace after a chunk size may only lead to an extension, and extensions hold no control characters', () => {
  for (const good of ['5 \t;a=b\r\nhello\r\n0\r\n\r\n', '5 \r\nhello\r\n0\r\n\r\n', '5;a="b c"\r\nhello\r\n0\r\n\r\n']) {
    const f = new ChunkedFramer();
    const b = Buffer.from(good);
    assert.equal(f.feed(b, 0, b.length), b.length, JSON.stringify(good));
  }
  for (const bad of ['5 junk\r\n', '5 5\r\n', '5;a\x01\r\n', '5;a\0\r\n']) {
    const f = new ChunkedFramer();
    const b = Buffer.from(bad);
    assert.equal(f.feed(b, 0, b.length), -1);
    assert.ok(f.error, `expected an error for ${JSON.stringify(bad)}`);
  }
});
