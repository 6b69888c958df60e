// HTTP/2 clients are held to the proxy's limits (limits.ts), as Envoy holds them: at
// most h2MaxConcurrentStreams streams per connection (advertised in SETTINGS, streams
// over it refused with REFUSED_STREAM and counted), header lists over
// h2MaxHeaderListBytes answered 431 as HTTP/1.1's over-size heads are, and sessions with
// no open stream for idleTimeoutMs closed with GOAWAY, on the listener side and on the
// proxy's own pooled sessions to HTTP/2 upstreams. Finished streams are not kept.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Exchange, Handler } from '../../src/proxy/stack/exchange.js';
import { Stack } from '../../src/proxy/stack/layer.js';
import { withEndpoint, type Picked } from '../../src/proxy/stack/decisions.js';
import { H2SessionPool, h2Forwarder } from '../../src/proxy/h2/forwarder.js';
import { createH2Server } from '../../src/proxy/h2/server-stream.js';
import { DEFAULT_LIMITS, LimitsRef, limitsWith } from '../../src/proxy/listeners/limits.js';
import type { ListenerContext } from '../../src/proxy/listeners/listener-context.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { listenH1AndH2 } from '../helpers/h2.js';
import { eventually } from '../helpers/eventually.js';
import { h2Request } from '../helpers/h2.js';
import { F, frame, PREFACE, RawH2, request, T } from '../helpers/h2-frames.js';
import { metricsText, startInbound } from '../helpers/proxy-pair.js';

let app: net.Server;
let appPort: number;
let inbound: Sidecar;
/** Requests to /hold wait here until released. */
const held: (() => void)[] = [];
const releaseAll = (): void => {
  for (const r of held.splice(0)) r();
};

/** An app that answers HTTP/1.1 and h2c on one port, holding /hold until released. */
function startApp(): Promise<number> {
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    if (req.url === '/hold') held.push(() => res.end('released'));
    else res.end(`app ${req.url}`);
  };
  return listenH1AndH2(handler).then((a) => {
    app = a.server;
    return a.port;
  });
}

before(async () => {
  appPort = await startApp();
  inbound = await startInbound('api', 'v1', appPort);
});

after(async () => {
  releaseAll();
  await inbound.close();
  await new Promise<void>((r) => app.close(() => r()));
});

function refusals(text: string, limit: string): number {
  const m = new RegExp(`trellis_proxy_limit_refusals_total\\{listener="inbound",limit="${limit}"[^}]*\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

function connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  return session;
}

/** The value of `id` in the first SETTINGS frame the server sent. */
function advertised(c: RawH2, id: number): number | undefined {
  const s = c.frames.find((f) => f.type === T.SETTINGS && (f.flags & F.ACK) === 0);
  for (let o = 0; s !== undefined && o + 6 <= s.payload.length; o += 6) if (s.payload.readUInt16BE(o) === id) return s.payload.readUInt32BE(o + 2);
  return undefined;
}

test('streams over the limit are refused (REFUSED_STREAM) and counted; the first 100 are served', async () => {
  const port = inbound.addresses.inbound!.port;
  const limit = DEFAULT_LIMITS.h2MaxConcurrentStreams;
  const before = refusals(await metricsText(inbound), 'h2-streams');
  const c = new RawH2(port);
  try {
    // One write, as a client that ignores SETTINGS_MAX_CONCURRENT_STREAMS would: 101 requests, each held by the app.
    const ids = Array.from({ length: limit + 1 }, (_, i) => 2 * i + 1);
    c.write(PREFACE, frame(T.SETTINGS, 0, 0), ...ids.map((id) => request(id, '/hold')));
    const extra = ids[limit]!;
    await c.until('the extra stream refused', (r) => r.resets().get(extra) === http2.constants.NGHTTP2_REFUSED_STREAM);
    assert.equal(advertised(c, http2.constants.NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), limit, 'the limit is advertised');
    await eventually(() => held.length === limit, { timeoutMs: 5000, what: `${limit} requests at the app` });
    releaseAll();
    await c.until('the first 100 answered', (r) => ids.slice(0, limit).every((id) => r.ended().has(id)));
    assert.equal(c.resets().size, 1, 'only the extra stream was reset');
    // The connection serves on; its next stream tells the proxy of the one refused before it.
    c.write(request(extra + 2, '/next'));
    await c.until('the next stream answered', (r) => r.ended().has(extra + 2));
    assert.equal(refusals(await metricsText(inbound), 'h2-streams'), before + 1);
  } finally {
    c.close();
    releaseAll();
  }
});

test('a header list over the limit is answered 431 head-too-large, as HTTP/1.1 answers an over-size head, and counted', async () => {
  const port = inbound.addresses.inbound!.port;
  inbound.limits.current = limitsWith({ h2MaxHeaderListBytes: 4096 });
  const session = connect(port);
  try {
    const before = await metricsText(inbound);
    const over = await h2Request(session, { ':path': '/big', 'x-big': 'a'.repeat(5000) });
    assert.equal(over.status, 431);
    assert.equal(over.headers['trellis-error'], 'head-too-large');
    assert.equal(JSON.parse(over.body).code, 'TRELLIS_E_HEAD_TOO_LARGE');
    assert.equal((await h2Request(session, { ':path': '/small', 'x-small': 'a'.repeat(3000) })).status, 200, 'the session serves on');
    // Twice the limit and more: node resets the stream before it reaches the proxy (counted with the refused streams).
    const huge = await h2Request(session, { ':path': '/huge', 'x-big': 'a'.repeat(9000) }).then(
      () => 0,
      (err: { code?: string }) => err.code,
    );
    assert.equal(huge, 'ERR_HTTP2_STREAM_ERROR');
    assert.equal((await h2Request(session, { ':path': '/after' })).status, 200);
    const text = await metricsText(inbound);
    assert.equal(refusals(text, 'h2-header-list'), refusals(before, 'h2-header-list') + 1);
    assert.equal(refusals(text, 'h2-streams'), refusals(before, 'h2-streams') + 1);
  } finally {
    session.destroy();
    inbound.limits.current = DEFAULT_LIMITS;
  }
});

test('a session with no open stream for idleTimeoutMs is closed with GOAWAY; one with an open stream is not', async () => {
  const port = inbound.addresses.inbound!.port;
  inbound.limits.current = limitsWith({ idleTimeoutMs: 150 });
  const busy = connect(port);
  const idle = connect(port);
  const goaways = new Map<http2.ClientHttp2Session, number>();
  for (const s of [busy, idle]) s.on('goaway', (code: number) => goaways.set(s, code));
  try {
    const slow = h2Request(busy, { ':path': '/hold' });
    await eventually(() => held.length === 1, { timeoutMs: 3000, what: "the busy session's request at the app" });
    assert.equal((await h2Request(idle, { ':path': '/quick' })).status, 200);
    await eventually(() => idle.closed || idle.destroyed, { timeoutMs: 5000, what: 'the idle session closed' });
    assert.equal(goaways.get(idle), http2.constants.NGHTTP2_NO_ERROR, 'with GOAWAY (NO_ERROR)');
    // The idle one waited out the timeout after the busy one's stream opened: that one is still open.
    assert.equal(goaways.has(busy), false, 'a session with an open stream is kept');
    releaseAll();
    assert.equal((await slow).body, 'released');
    await eventually(() => busy.closed || busy.destroyed, { timeoutMs: 5000, what: 'the busy session closed once idle' });
    // A client that broke the protocol before its first stream (nghttp2 answered GOAWAY, node
    // kept the socket) is closed by the same timeout.
    const broken = new RawH2(port);
    broken.write(PREFACE, frame(T.SETTINGS, 0, 0, Buffer.alloc(5)));
    await broken.until('the broken connection closed', (r) => r.closed);
  } finally {
    busy.destroy();
    idle.destroy();
    releaseAll();
    inbound.limits.current = DEFAULT_LIMITS;
  }
});

test("the proxy's pooled sessions to HTTP/2 upstreams close when no stream has been open for their idle timeout", async () => {
  const pool = new H2SessionPool({ idleTimeoutMs: 100 });
  const to = { host: '127.0.0.1', port: appPort };
  const open = (): Promise<http2.ClientHttp2Session> =>
    new Promise((resolve, reject) => {
      pool.session(to, (entry, failure) => (failure === undefined ? resolve(entry.session) : reject(new Error(failure))));
    });
  const stream = (session: http2.ClientHttp2Session, path: string): Promise<void> =>
    new Promise((resolve) => {
      pool.session(to, (entry) => {
        const req = session.request({ ':path': path });
        entry.idle.streamOpened(req); // as the forwarder does for each stream
        req.resume();
        req.on('close', () => resolve());
        req.end();
      });
    });
  try {
    const first = await open();
    const held1 = stream(first, '/hold');
    await eventually(() => held.length === 1, { timeoutMs: 3000, what: 'the request at the app' });
    const other = await open();
    assert.equal(other, first, 'one session per endpoint, kept while a stream is open');
    // An idle session to another address, opened after the stream: its closing shows the timeout has passed.
    const second = await new Promise<http2.ClientHttp2Session>((resolve) =>
      pool.session({ host: '127.0.0.1', port: inbound.addresses.inbound!.port }, (e) => resolve(e.session)),
    );
    await eventually(() => second.closed || second.destroyed, { timeoutMs: 5000, what: 'the idle session closed' });
    assert.equal(first.closed, false, 'the session with an open stream is kept');
    releaseAll();
    await held1;
    await eventually(() => first.closed || first.destroyed, { timeoutMs: 5000, what: 'the session closed once idle' });
    assert.notEqual(await open(), first, 'a closed session is not handed out again');
  } finally {
    releaseAll();
    pool.close();
  }
});

test('finished streams are not kept: their exchanges and streams are collected while the session lives', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const refs: WeakRef<object>[] = [];
  const limits = new LimitsRef();
  const ctx: ListenerContext = { listener: 'inbound', limits, failed: () => {}, refused: () => {}, http1: { limits, refused: () => {} } };
  const pool = new H2SessionPool();
  const endpoint = { id: 'app-0', host: '127.0.0.1', port: appPort, version: 'v1' };
  const server = createH2Server(
    Stack.start()
      .push((next: Handler<Picked>) => ({
        request(ex: Exchange) {
          refs.push(new WeakRef(ex), new WeakRef((ex.client as unknown as { stream: object }).stream));
          next(withEndpoint(ex, endpoint));
        },
      }))
      .build(h2Forwarder(pool, { connect: 'TRELLIS_E_APP_UNAVAILABLE', reset: 'TRELLIS_E_UPSTREAM_RESET' })),
    ctx,
  );
  const listener = net.createServer((socket) => server.emit('connection', socket));
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const session = connect((listener.address() as net.AddressInfo).port);
  try {
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => h2Request(session, { ':path': `/r${round}-${i}`, ':method': 'POST' }, 'body')));
      assert.ok(answers.every((a) => a.status === 200));
    }
    assert.equal(refs.length, 500);
    await eventually(
      async () => {
        gc();
        await new Promise((r) => setImmediate(r));
        return refs.every((r) => r.deref() === undefined);
      },
      {
        timeoutMs: 5000,
        what: `every finished exchange and stream collected (${refs.filter((r) => r.deref() !== undefined).length} of ${refs.length} still held)`,
      },
    );
    assert.equal(session.closed, false);
  } finally {
    session.destroy();
    pool.close();
    await new Promise<void>((r) => listener.close(() => r()));
  }
});
