// Whole-instance loss costs no safe request: when a peer sidecar (and its app) dies
// under a GET, HEAD or OPTIONS without a body, before any response byte, the caller's
// sidecar sends it to another endpoint, with no `retry` on the route, within the
// destination's retry budget. A POST (or a body-less DELETE) is not sent twice: it
// fails with 502 upstream-reset as before. HTTP/1.1 and HTTP/2 alike.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, test } from 'node:test';
import type { BalancingConfig, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, metricsText, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

// Round robin, so the dying endpoint surely gets its share; outlier detection off, so it keeps getting it.
const ROUND_ROBIN: BalancingConfig = { policy: 'test/round-robin', balancer: 'RoundRobin', panicThreshold: 0 };

function upstreamOf(service: string, ports: { id: string; port: number }[]): UpstreamSnapshot {
  return {
    service,
    protocol: 'http',
    routes: [],
    balancing: ROUND_ROBIN,
    backends: { [service]: { name: service, endpoints: ports.map((p) => ({ id: p.id, host: '127.0.0.1', port: p.port, version: 'v1' })) } },
  };
}

type Protocol = 'HTTP/1.1' | 'HTTP/2';
interface Answer {
  status: number;
  error: string;
  body: string;
}

/** One request through the outbound listener at `port`, over a fresh HTTP/1.1 connection or the given HTTP/2 session. */
function send(protocol: Protocol, port: number, session: http2.ClientHttp2Session | undefined, method: string, path: string, body?: string): Promise<Answer> {
  if (protocol === 'HTTP/2') {
    return new Promise((resolve, reject) => {
      const s = session!.request({ ':method': method, ':path': path }, { endStream: body === undefined });
      let text = '';
      let status = 0;
      let error = '';
      s.on('response', (h) => {
        status = Number(h[':status']);
        error = String(h['trellis-error'] ?? '');
      });
      s.setEncoding('utf8');
      s.on('data', (c: string) => {
        text += c;
      });
      s.on('end', () => resolve({ status, error, body: text }));
      s.on('error', reject);
      if (body !== undefined) s.end(body);
    });
  }
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, error: String(res.headers['trellis-error'] ?? ''), body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function listenH2(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
): Promise<{ server: http2.Http2Server; port: number }> {
  const server = http2.createServer();
  server.on('session', (s) => s.on('error', () => {}));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
      }),
  );
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * A peer that dies under every request it is sent: it reads the request, then its
 * connection goes down without a byte of answer (RST), as when the sidecar's process
 * is killed. `hits` counts the requests it took down with it.
 */
async function dyingPeer(protocol: Protocol): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  if (protocol === 'HTTP/2') {
    const { port } = await listenH2((stream) => {
      hits++;
      (stream.session!.socket as net.Socket).resetAndDestroy();
    });
    return { port, hits: () => hits };
  }
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      hits++;
      socket.resetAndDestroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => closeServer(server));
  return { port: (server.address() as net.AddressInfo).port, hits: () => hits };
}

async function goodPeer(protocol: Protocol): Promise<number> {
  if (protocol === 'HTTP/2') {
    return (
      await listenH2((stream, headers) => {
        stream.respond({ ':status': 200 });
        stream.end(headers[':method'] === 'HEAD' ? undefined : 'good');
      })
    ).port;
  }
  const { server, port } = await listenHttp((req, res) => {
    req.resume();
    req.on('end', () => res.end('good'));
  });
  cleanup.push(() => closeServer(server));
  return port;
}

async function outboundTo(service: string, ports: { id: string; port: number }[]): Promise<{ out: Sidecar; port: number }> {
  const out = await startOutbound('web', { [service]: upstreamOf(service, ports) });
  cleanup.push(() => out.close());
  return { out, port: out.addresses.upstreams[service]!.port };
}

function h2Session(protocol: Protocol, port: number): http2.ClientHttp2Session | undefined {
  if (protocol !== 'HTTP/2') return undefined;
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  cleanup.push(() => void session.destroy());
  return session;
}

for (const protocol of ['HTTP/1.1', 'HTTP/2'] as const) {
  test(`${protocol}: safe requests reset by a dying peer before any answer go to another endpoint, with no route retry`, async () => {
    const dying = await dyingPeer(protocol);
    const good = await goodPeer(protocol);
    const { out, port } = await outboundTo('api', [
      { id: 'api-dying', port: dying.port },
      { id: 'api-good', port: good },
    ]);
    const session = h2Session(protocol, port);
    const answers: string[] = [];
    // Concurrent and one at a time, so some are in flight together when the peer dies.
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const method = ['GET', 'HEAD', 'OPTIONS'][i % 3]!;
        const r = await send(protocol, port, session, method, `/c/${i}`);
        answers.push(`${method} ${r.status} ${r.error}`.trim());
      }),
    );
    for (let i = 0; i < 8; i++) {
      const r = await send(protocol, port, session, 'GET', `/s/${i}`);
      answers.push(`GET ${r.status} ${r.error}`.trim());
    }
    assert.ok(dying.hits() > 0, 'some requests went to the dying peer first');
    assert.deepEqual(
      answers.filter((a) => !/ 200$/.test(a)),
      [],
      'every safe request was answered',
    );
    assert.match(await metricsText(out), /trellis_http_retries_total\{[^}]*destination="api"[^}]*reason="reset"[^}]*\} [1-9]/);
  });

  test(`${protocol}: a POST, or a DELETE, reset by a dying peer is not sent again`, async () => {
    const dying = await dyingPeer(protocol);
    const good = await goodPeer(protocol);
    const { port } = await outboundTo('orders', [
      { id: 'orders-dying', port: dying.port },
      { id: 'orders-good', port: good },
    ]);
    const session = h2Session(protocol, port);
    for (const [method, body] of [
      ['POST', 'order'],
      ['DELETE', undefined],
    ] as const) {
      const before = dying.hits();
      let last: Answer | undefined;
      for (let i = 0; i < 10 && dying.hits() === before; i++) last = await send(protocol, port, session, method, `/o/${i}`, body);
      assert.ok(dying.hits() > before, `a ${method} reached the dying peer`);
      assert.deepEqual({ status: last!.status, error: last!.error }, { status: 502, error: 'upstream-reset' }, `${method} is not replayed`);
    }
  });

  // The real thing: two instances, each a sidecar in front of its app; one instance
  // (sidecar and app) goes down with requests in flight.
  test(`${protocol}: GETs in flight when a whole instance dies are all answered`, async () => {
    const held: (() => void)[] = [];
    let release = false;
    const pending = { doomed: 0, good: 0 };
    const app = async (name: 'doomed' | 'good'): Promise<{ port: number; close: () => Promise<void> }> => {
      if (protocol === 'HTTP/2') {
        const server = http2.createServer();
        server.on('session', (s) => s.on('error', () => {}));
        server.on('stream', (stream) => {
          stream.on('error', () => {});
          const answer = (): void => {
            if (!stream.destroyed) {
              stream.respond({ ':status': 200 });
              stream.end(name);
            }
          };
          pending[name]++;
          if (release && name === 'good') answer();
          else held.push(answer);
        });
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
        const close = (): Promise<void> =>
          new Promise<void>((r) => {
            server.close(() => r());
          });
        cleanup.push(close);
        return { port: (server.address() as net.AddressInfo).port, close };
      }
      const { server, port } = await listenHttp((req, res) => {
        req.resume();
        const answer = (): void => {
          if (!res.destroyed) res.end(name);
        };
        pending[name]++;
        if (release && name === 'good') answer();
        else held.push(answer);
      });
      cleanup.push(() => closeServer(server));
      return { port, close: () => closeServer(server) };
    };
    const doomedApp = await app('doomed');
    const goodApp = await app('good');
    const doomed = await startInbound('shop', 'v1', doomedApp.port);
    const good = await startInbound('shop', 'v1', goodApp.port);
    cleanup.push(
      () => doomed.close(),
      () => good.close(),
    );
    const { port } = await outboundTo('shop', [
      { id: 'shop-doomed', port: doomed.addresses.inbound!.port },
      { id: 'shop-good', port: good.addresses.inbound!.port },
    ]);
    const session = h2Session(protocol, port);
    const inFlight = Array.from({ length: 8 }, (_, i) => send(protocol, port, session, 'GET', `/f/${i}`));
    await eventually(() => pending.doomed >= 2 && pending.doomed + pending.good === 8, { what: 'requests in flight on both instances' });
    // The instance dies: its sidecar and its app together.
    await Promise.all([doomed.close(), doomedApp.close()]);
    release = true;
    for (const answer of held.splice(0)) answer();
    const answers = await Promise.all(inFlight);
    assert.deepEqual(
      answers.map((a) => `${a.status} ${a.error}`.trim()),
      Array(8).fill('200'),
    );
    assert.ok(answers.every((a) => a.body === 'good'));
  });
}

// The classic race of keep-alive: the peer closes a pooled connection just as it is
// reused. A safe request on it is sent again on a fresh connection (same endpoint).
test('HTTP/1.1: a GET on a pooled connection the peer closed as it was reused is sent again', async () => {
  let connections = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const n = ++connections;
    let head = '';
    let requests = 0;
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      while (head.includes('\r\n\r\n')) {
        head = head.slice(head.indexOf('\r\n\r\n') + 4);
        requests++;
        // The first connection answers once, then drops the next request without a word.
        if (n === 1 && requests === 2) return void socket.destroy();
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${String(n).length}\r\n\r\n${n}`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => closeServer(server));
  const { port } = await outboundTo('solo', [{ id: 'solo-0', port: (server.address() as net.AddressInfo).port }]);
  const first = await send('HTTP/1.1', port, undefined, 'GET', '/1');
  assert.deepEqual([first.status, first.body], [200, '1']);
  const second = await send('HTTP/1.1', port, undefined, 'GET', '/2');
  assert.deepEqual([second.status, second.body], [200, '2'], 'sent again on a fresh connection');
});

// Only idempotent methods are replayed on a fresh connection (RFC 9112 9.3.1.1: a
// proxy must not retry others on its own); a body-less POST used to be.
test('HTTP/1.1: a body-less POST on a pooled connection the peer closed as it was reused is not sent again', async () => {
  let posts = 0;
  let connections = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const n = ++connections;
    let head = '';
    let requests = 0;
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      while (head.includes('\r\n\r\n')) {
        if (head.startsWith('POST')) posts++;
        head = head.slice(head.indexOf('\r\n\r\n') + 4);
        requests++;
        if (n === 1 && requests === 2) return void socket.destroy();
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => closeServer(server));
  const { port } = await outboundTo('solo-post', [{ id: 'solo-post-0', port: (server.address() as net.AddressInfo).port }]);
  assert.equal((await send('HTTP/1.1', port, undefined, 'GET', '/1')).status, 200);
  const r = await send('HTTP/1.1', port, undefined, 'POST', '/2');
  assert.deepEqual({ status: r.status, error: r.error, posts }, { status: 502, error: 'upstream-reset', posts: 1 });
});
