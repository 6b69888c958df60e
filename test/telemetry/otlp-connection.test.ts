// The span exporter's own HTTP/1.1 connection to its collector: one kept-alive socket for
// every batch, each answer framed (Content-Length, chunked, until close, interim 100s),
// and a collector that answers badly (junk, an endless head, a broken chunk, silence)
// costs a failed batch and a fresh connection, never a crash or a wait without end.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { OtlpConnection } from '../../src/telemetry/tracing/otlp-connection.js';

interface RawCollector {
  readonly url: URL;
  /** Requests received (head and body), in order. */
  readonly requests: string[];
  /** Connections accepted. */
  connections: number;
  close(): Promise<void>;
}

/**
 * A collector on a raw socket: for each complete request (Content-Length framed) it writes
 * `answer(n)` (n counts requests from 0), or nothing when that returns undefined; `end`
 * closes the connection after the answer.
 */
async function rawCollector(answer: (n: number) => { readonly bytes: string | undefined; readonly end?: boolean }): Promise<RawCollector> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const c = {
    url: new URL('http://127.0.0.1/'),
    requests,
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((socket) => {
    c.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, headEnd))?.[1] ?? 0);
        if (buf.length < headEnd + 4 + length) return;
        requests.push(buf.slice(0, headEnd + 4 + length));
        buf = buf.slice(headEnd + 4 + length);
        const a = answer(requests.length - 1);
        if (a.bytes !== undefined) socket.write(a.bytes);
        if (a.end) socket.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  c.url = new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/traces?x=1`);
  return c;
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}';

test('batches share one kept-alive connection; the head carries the path, the length and the given headers, never framing ones', async () => {
  const c = await rawCollector(() => ({ bytes: OK }));
  const conn = new OtlpConnection(c.url, { authorization: 'Bearer t', 'content-length': '1', Host: 'evil' }, 5000);
  try {
    for (let i = 0; i < 3; i++) assert.deepEqual(await conn.post(Buffer.from(`{"n":${i}}`)), { ok: true, reason: '', bodyWritten: true });
    assert.equal(c.connections, 1);
    assert.equal(c.requests.length, 3);
    const r = c.requests[2]!;
    assert.match(r, /^POST \/v1\/traces\?x=1 HTTP\/1\.1\r\n/);
    assert.match(r, /\r\nauthorization: Bearer t\r\n/);
    assert.match(r, /\r\nContent-Length: 7\r\n\r\n\{"n":2\}$/);
    assert.equal(r.match(/content-length/gi)?.length, 1);
    assert.equal(r.match(/^host:/gim)?.length, 1);
    assert.doesNotMatch(r, /evil/);
  } finally {
    conn.close();
    await c.close();
  }
});

test('chunked answers, an interim 100 and a 204 without a length are framed, and the connection is kept', async () => {
  const answers = [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-trailer: 1\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 204 No Content\r\n\r\n',
    OK,
  ];
  const c = await rawCollector((n) => ({ bytes: answers[n] }));
  const conn = new OtlpConnection(c.url, {}, 5000);
  try {
    for (let i = 0; i < answers.length; i++) assert.equal((await conn.post(Buffer.from('{}'))).ok, true, `answer ${i}`);
    assert.equal(c.connections, 1);
  } finally {
    conn.close();
    await c.close();
  }
});

test('an answer with neither length nor chunks ends with the connection; the next batch opens a new one', async () => {
  const c = await rawCollector(() => ({ bytes: 'HTTP/1.1 200 OK\r\n\r\n{}', end: true }));
  const conn = new OtlpConnection(c.url, {}, 5000);
  try {
    assert.equal((await conn.post(Buffer.from('{}'))).ok, true);
    assert.equal((await conn.post(Buffer.from('{}'))).ok, true);
    assert.equal(c.connections, 2);
  } finally {
    conn.close();
    await c.close();
  }
});

test('Connection: close and an error status: the batch fails with the status, and the next one reconnects', async () => {
  const c = await rawCollector((n) => ({ bytes: n === 0 ? 'HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' : OK }));
  const conn = new OtlpConnection(c.url, {}, 5000);
  try {
    const first = await conn.post(Buffer.from('{}'));
    assert.equal(first.ok, false);
    assert.equal(first.reason, 'collector answered 503');
    assert.equal((await conn.post(Buffer.from('{}'))).ok, true);
    assert.equal(c.connections, 2);
  } finally {
    conn.close();
    await c.close();
  }
});

test('a collector answering badly fails the batch and the connection is dropped: junk, a broken chunk, an endless head, extra bytes, silence', async () => {
  const bad: readonly { readonly bytes: string; readonly reason: RegExp }[] = [
    { bytes: 'SSH-2.0-OpenSSH\r\n\r\n', reason: /not HTTP\/1\.1/ },
    { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', reason: /chunked answer is malformed/ },
    { bytes: `HTTP/1.1 200 OK\r\nX-Long: ${'a'.repeat(40 * 1024)}`, reason: /head over 16 KB/ },
  ];
  for (const b of bad) {
    const c = await rawCollector(() => ({ bytes: b.bytes }));
    const conn = new OtlpConnection(c.url, {}, 5000);
    try {
      const r = await conn.post(Buffer.from('{}'));
      assert.equal(r.ok, false);
      assert.match(r.reason, b.reason);
    } finally {
      conn.close();
      await c.close();
    }
  }
  // An answer followed by bytes nobody asked for: the batch counts, the connection does not carry the next.
  const extra = await rawCollector(() => ({ bytes: `${OK}HTTP/1.1 200 OK\r\n` }));
  const conn = new OtlpConnection(extra.url, {}, 5000);
  try {
    assert.equal((await conn.post(Buffer.from('{}'))).ok, true);
    assert.equal((await conn.post(Buffer.from('{}'))).ok, true);
    assert.equal(extra.connections, 2);
  } finally {
    conn.close();
    await extra.close();
  }
  // Silence: the export timeout gives the batch up.
  const silent = await rawCollector(() => ({ bytes: undefined }));
  const quiet = new OtlpConnection(silent.url, {}, 50);
  try {
    const r = await quiet.post(Buffer.from('{}'));
    assert.equal(r.ok, false);
    assert.equal(r.reason, 'no answer in 50 ms');
  } finally {
    quiet.close();
    await silent.close();
  }
});

test('an endpoint or header it cannot use fails every batch with the reason, and a closed connection posts nothing', async () => {
  const ftp = new OtlpConnection(new URL('ftp://127.0.0.1/'), {}, 1000);
  assert.match((await ftp.post(Buffer.from('{}'))).reason, /only http: and https:/);
  const injected = new OtlpConnection(new URL('http://127.0.0.1:1/'), { 'x-a': 'b\r\nx-evil: 1' }, 1000);
  assert.match((await injected.post(Buffer.from('{}'))).reason, /collector header "x-a": invalid characters/);
  const refused = new OtlpConnection(new URL('http://127.0.0.1:1/'), {}, 1000);
  assert.equal((await refused.post(Buffer.from('{}'))).ok, false);
  refused.close();
  assert.equal((await refused.post(Buffer.from('{}'))).reason, 'exporter closed');
});
