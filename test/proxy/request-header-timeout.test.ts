// The HTTP/1.1 listener's limits come from the sidecar's LimitsRef (src/proxy/listeners/limits.ts),
// read when a connection arrives: a request head that trickles in for longer than
// requestHeaderTimeoutMs is answered 408 and closed; a connection with nothing in
// progress is closed after idleTimeoutMs, without an answer; a head over
// maxRequestHeadBytes gets 431. Small limits keep the tests short; the listener's one
// sweep shortens itself to suit them, and the tests poll, never sleep a fixed time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { limitsWith } from '../../src/proxy/listeners/limits.js';
import { eventually } from '../helpers/eventually.js';
import { closeServer, listenHttp, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;

before(async () => {
  app = await listenHttp((_req, res) => res.end('ok'));
  inbound = await startInbound('api', 'v1', app.port);
  outbound = await startOutbound('web', {
    api: {
      service: 'api',
      protocol: 'http',
      routes: [],
      backends: { api: { name: 'api', endpoints: [{ id: 'a', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app.server);
});

/** A connection that records what it receives and when it closed. */
function open(port: number): { sock: net.Socket; got: () => string; closed: () => boolean } {
  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  let closed = false;
  sock.on('data', (c: Buffer) => {
    got += c.toString('latin1');
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
  });
  return { sock, got: () => got, closed: () => closed };
}

test('a request head that does not arrive in time is answered 408 and closed', async () => {
  outbound.limits.current = limitsWith({ requestHeaderTimeoutMs: 200, idleTimeoutMs: 60_000 });
  const c = open(outbound.addresses.upstreams.api!.port);
  try {
    c.sock.write('GET / HTTP/1.1\r\nHost: api\r\nX-Slow: ');
    await eventually(c.closed, { timeoutMs: 5000, what: 'the connection to close' });
    assert.match(c.got(), /^HTTP\/1\.1 408 /, c.got());
    assert.match(c.got(), /trellis-error: header-timeout/);
    assert.match(c.got(), /connection: close/);
    const m = await outbound.metrics.text();
    assert.match(m, /trellis_http_requests_refused_total\{[^}]*error="header-timeout"[^}]*\} 1/);
  } finally {
    c.sock.destroy();
  }
});

test('a kept-alive connection with nothing more to say is closed by the idle timeout, never answered 408', async () => {
  outbound.limits.current = limitsWith({ requestHeaderTimeoutMs: 150, idleTimeoutMs: 600 });
  const c = open(outbound.addresses.upstreams.api!.port);
  try {
    c.sock.write('GET / HTTP/1.1\r\nHost: api\r\n\r\n');
    await eventually(() => c.got().endsWith('ok'), { timeoutMs: 3000, what: 'the response' });
    // Nothing more is sent: only the idle timeout may close this connection.
    await eventually(c.closed, { timeoutMs: 5000, what: 'the idle connection to close' });
    assert.doesNotMatch(c.got(), /408/);
    assert.equal((c.got().match(/HTTP\/1\.1 /g) ?? []).length, 1);
  } finally {
    c.sock.destroy();
  }
});

test('the idle timeout comes from the limits too: a connection that says nothing is closed without an answer', async () => {
  outbound.limits.current = limitsWith({ requestHeaderTimeoutMs: 60_000, idleTimeoutMs: 200 });
  const c = open(outbound.addresses.upstreams.api!.port);
  try {
    c.sock.write('GET / HTTP/1.1\r\nHost: api\r\n\r\n');
    await eventually(() => c.got().endsWith('ok'), { timeoutMs: 3000, what: 'the response' });
    await eventually(c.closed, { timeoutMs: 5000, what: 'the idle connection to close' });
    assert.equal((c.got().match(/HTTP\/1\.1 /g) ?? []).length, 1);
  } finally {
    c.sock.destroy();
  }
});

test('the head size limit comes from the limits: a head over maxRequestHeadBytes gets 431', async () => {
  inbound.limits.current = limitsWith({ maxRequestHeadBytes: 1024 });
  const port = inbound.addresses.inbound!.port;
  const big = await rawExchange(port, `GET / HTTP/1.1\r\nHost: api\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`, 2000);
  assert.match(big, /^HTTP\/1\.1 431 /);
  assert.match(big, /exceeds 1024 bytes/);
  const small = await rawExchange(port, `GET / HTTP/1.1\r\nHost: api\r\nX-Small: ${'a'.repeat(500)}\r\nConnection: close\r\n\r\n`, 2000);
  assert.match(small, /^HTTP\/1\.1 200 /);
});
